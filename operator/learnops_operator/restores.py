"""DatabaseRestore reconciliation: one Job per generation, its result into status, once.

Level-based and idempotent: a restore runs when status.runGeneration lags metadata.generation
and no earlier generation's Job is still running; the Job name is derived from the generation,
so a repeat (restart, second replica, re-delivered event) hits AlreadyExists. Results are
recorded only while status still names that Job as running, so each is recorded exactly once.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from learnops_operator import jobpods, restoremetrics, restoreresults, results, status
from learnops_operator.context import Context, Key
from learnops_operator.errors import InvalidSpec
from learnops_operator.kube import api_message
from learnops_operator.restorespec import RESTORE_PLURAL, RestoreSpec, Storage, parse_restore
from learnops_operator.spec import parse

log = logging.getLogger(__name__)
SUCCEEDED = "Succeeded"


def _now() -> datetime:
    return datetime.now(UTC)


def _key(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return str(meta["namespace"]), str(meta["name"])


def _generation(body: Mapping[str, Any]) -> int:
    return int(body["metadata"].get("generation") or 0)


def remember(ctx: Context, event_type: str | None, body: Mapping[str, Any]) -> None:
    key = _key(body)
    if event_type == "DELETED":
        ctx.restores.pop(key, None)
        restoremetrics.forget_restore(*key)
        return
    ctx.restores[key] = dict(body)


def needs_run(body: Mapping[str, Any]) -> bool:
    """Cheap, in-memory: this generation has not run and nothing else is running."""
    if body["metadata"].get("deletionTimestamp"):
        return False
    st = body.get("status") or {}
    if st.get("phase") == "Running":
        return False
    ran = st.get("runGeneration")
    return ran is None or int(ran) < _generation(body)


def _write(
    ctx: Context, body: Mapping[str, Any], mutate: Any
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    ns, name = _key(body)
    return ctx.kube.update_status(ns, name, mutate, known=body, plural=RESTORE_PLURAL)


def _terminal(
    st: Mapping[str, Any],
    phase: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    new = status.set_condition(
        st, SUCCEEDED, "True" if phase == "Succeeded" else "False", reason, message, generation, now
    )
    new.update(
        {
            "phase": phase,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "runGeneration": generation,
        }
    )
    return new


def _fail_now(ctx: Context, body: Mapping[str, Any], reason: str, message: str) -> None:
    """A generation that cannot run at all fails at once (and is not retried)."""
    gen, now = _generation(body), _now()
    written = _write(ctx, body, lambda st, _b: _terminal(st, "Failed", reason, message, gen, now))
    if written is not None:
        ctx.kube.post_event(body, "Warning", reason, message)
        restoremetrics.observe_restore(*_key(body), succeeded=False, duration=None, when=now)


def _pending(ctx: Context, body: Mapping[str, Any], reason: str, message: str) -> None:
    """Waiting for a reference that may still appear (the sweep retries)."""
    gen, now = _generation(body), _now()

    def mutate(st: Mapping[str, Any], _b: Mapping[str, Any]) -> dict[str, Any]:
        new = status.set_condition(st, SUCCEEDED, "Unknown", reason, message, gen, now)
        new.update({"phase": "Pending", "reason": reason, "message": message})
        new["observedGeneration"] = gen
        return new

    written = _write(ctx, body, mutate)
    if written is not None and (written[0].get("reason") != reason):
        ctx.kube.post_event(body, "Warning", reason, message)


def _same_database(spec: RestoreSpec, backup_db: Mapping[str, Any]) -> bool:
    """Only where both sides name host and database (pgpass); the pod checks the rest."""
    if spec.target.host is None or not backup_db.get("host"):
        return False
    host = str(backup_db["host"]).strip().lower().rstrip(".")
    return (
        spec.target.host.strip().lower().rstrip(".") == host
        and int(spec.target.port or 5432) == int(backup_db.get("port") or 5432)
        and spec.dbname == backup_db.get("dbname")
    )


def _source(ctx: Context, body: Mapping[str, Any], spec: RestoreSpec) -> Storage | None:
    """The storage to mount; None after reporting why there is none (yet)."""
    ns, _ = _key(body)
    if spec.storage is not None:
        storage = spec.storage
    else:
        assert spec.backup_name is not None
        backup = ctx.backups.get((ns, spec.backup_name)) or ctx.kube.get_backup(
            ns, spec.backup_name
        )
        if backup is None:
            _pending(
                ctx,
                body,
                "BackupNotFound",
                f"DatabaseBackup {spec.backup_name!r} not found in namespace {ns!r}",
            )
            return None
        try:
            backup_spec = parse(backup.get("spec") or {})
        except InvalidSpec as exc:
            _fail_now(ctx, body, "BackupInvalid", f"DatabaseBackup {spec.backup_name}: {exc}")
            return None
        if not spec.allow_source_target and _same_database(
            spec, (backup.get("spec") or {}).get("database") or {}
        ):
            _fail_now(
                ctx,
                body,
                "TargetIsSource",
                f"target {spec.target.host}/{spec.dbname} is the source database of "
                f"DatabaseBackup {spec.backup_name}; allowSourceTarget: true permits it",
            )
            return None
        if backup_spec.encryption is not None and spec.identity_secret is None:
            _fail_now(
                ctx,
                body,
                "IdentityMissing",
                f"DatabaseBackup {spec.backup_name} encrypts its artifacts: "
                "source.identitySecretRef must name the age identity that decrypts them",
            )
            return None
        storage = Storage(
            backup_spec.claim_name, backup_spec.sub_path, spec.backup_name, backup_spec.objects
        )
    if storage.objects is None and not ctx.kube.pvc_exists(ns, storage.claim_name):
        _pending(
            ctx,
            body,
            "PersistentVolumeClaimNotFound",
            f"PersistentVolumeClaim {storage.claim_name!r} not found in namespace {ns!r}",
        )
        return None
    return storage


def start(ctx: Context, body: Mapping[str, Any]) -> bool:
    """Run this generation if it has not run; True if this call created its Job."""
    if not needs_run(body):
        return False
    ns, name = _key(body)
    gen = _generation(body)
    try:
        spec = parse_restore(body.get("spec") or {})
    except InvalidSpec as exc:
        _fail_now(ctx, body, "InvalidSpec", str(exc))
        return False
    storage = _source(ctx, body, spec)
    if storage is None:
        return False
    uid = str(body["metadata"].get("uid") or "")
    job = jobpods.restore_job(ns, name, uid, gen, spec, storage, ctx.settings.dump_image)
    try:
        created = ctx.kube.create_job(job)
    except ApiException as exc:
        if exc.status != 422:
            raise
        _fail_now(ctx, body, "InvalidSpec", f"the Job was rejected: {api_message(exc)}")
        return False
    job_name = job["metadata"]["name"]
    now = _now()

    def running(st: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
        if _generation(b) != gen or (st.get("runGeneration") or 0) >= gen:
            return None  # another writer got here first, or the spec moved on
        new = status.set_condition(
            st, SUCCEEDED, "Unknown", "Running", f"Job {job_name} is restoring", gen, now
        )
        for stale in ("reason", "message", "completionTime", "durationSeconds", "rowCounts"):
            new.pop(stale, None)
        new.update(
            {
                "phase": "Running",
                "jobName": job_name,
                "runGeneration": gen,
                "observedGeneration": gen,
                "startTime": status.iso(now),
                "artifact": spec.artifact,
            }
        )
        return new

    written = _write(ctx, body, running)
    if created and written is not None:
        what = spec.backup_name or (spec.storage.claim_name if spec.storage else "storage")
        ctx.kube.post_event(
            body,
            "Normal",
            "RestoreStarted",
            f"Job {job_name} restores {spec.artifact} of {what} into {spec.dbname}",
        )
        log.info(
            "restore started",
            extra={"event": "restore.started", "namespace": ns, "job": job_name},
        )
    return created


def job_needs_work(ctx: Context, job: Mapping[str, Any]) -> bool:
    meta = job["metadata"]
    owner = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner or results.finished_condition(job) is None:
        return False
    st = (ctx.restores.get((meta["namespace"], owner)) or {}).get("status") or {}
    return bool(st.get("phase") == "Running" and st.get("jobName") == meta["name"])


def record(
    st: Mapping[str, Any],
    job_name: str,
    result: results.RunResult,
    more: restoreresults.Extras,
    now: datetime,
) -> dict[str, Any] | None:
    """Fold a finished restore Job into status (None if it is not the running one)."""
    if st.get("phase") != "Running" or st.get("jobName") != job_name:
        return None
    gen = int(st.get("runGeneration") or 0)
    new = copy.deepcopy(dict(st))
    if result.succeeded:
        checked = more.tables_checked
        message = f"{result.artifact or 'the artifact'} restored" + (
            f"; {checked} tables match the manifest's row counts" if checked else ""
        )
        new = _terminal(new, "Succeeded", "Restored", message, gen, now)
    else:
        new = _terminal(new, "Failed", result.reason, result.message or result.reason, gen, now)
    new["completionTime"] = status.iso(result.finished_at)
    for key, value in (
        ("artifact", result.artifact),
        ("sha256", result.sha256),
        ("sizeBytes", result.size_bytes),
        ("durationSeconds", result.duration_seconds),
        ("parallelJobs", more.parallel_jobs),
    ):
        if value is not None:
            new[key] = value
    if more.tables_checked is not None:
        new["rowCounts"] = {
            "tablesChecked": more.tables_checked,
            "rowsChecked": more.rows_checked or 0,
            "mismatches": list(more.mismatches),
        }
    return new


def job_changed(ctx: Context, job: Mapping[str, Any]) -> None:
    meta = job["metadata"]
    owner = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not owner or results.finished_condition(job) is None:
        return
    key = (str(meta["namespace"]), str(owner))
    pods = ctx.kube.job_pods(key[0], meta["name"])
    result = results.from_job(job, pods, "dump", _now(), prefix=jobpods.artifact_prefix(job))
    if result is None:
        return
    more = restoreresults.extras(pods, result.succeeded)
    now = _now()
    written = ctx.kube.update_status(
        *key,
        lambda st, _b: record(st, str(meta["name"]), result, more, now),
        plural=RESTORE_PLURAL,
    )
    if written is None:
        return
    body = ctx.restores.get(key) or ctx.kube.get_backup(*key, plural=RESTORE_PLURAL)
    if body is None:
        return
    new = written[1]
    if result.succeeded:
        ctx.kube.post_event(body, "Normal", "RestoreSucceeded", str(new.get("message")))
    else:
        ctx.kube.post_event(
            body,
            "Warning",
            "RestoreFailed",
            f"{meta['name']} failed ({result.reason}): {result.message}",
        )
    restoremetrics.observe_restore(
        *key, succeeded=result.succeeded, duration=result.duration_seconds, when=result.finished_at
    )
    log.info(
        "restore recorded",
        extra={
            "event": "restore.recorded",
            "namespace": key[0],
            "resource": key[1],
            "succeeded": result.succeeded,
            "reason": result.reason,
        },
    )


def _lost(ctx: Context, body: Mapping[str, Any], job_name: str, now: datetime) -> None:
    """The running Job vanished before its result was read (deleted by hand, say)."""

    def mutate(st: Mapping[str, Any], _b: Mapping[str, Any]) -> dict[str, Any] | None:
        if st.get("phase") != "Running" or st.get("jobName") != job_name:
            return None
        gen = int(st.get("runGeneration") or 0)
        message = f"Job {job_name} disappeared before it reported a result"
        return _terminal(st, "Failed", "JobLost", message, gen, now)

    if _write(ctx, body, mutate) is not None:
        ctx.kube.post_event(body, "Warning", "JobLost", f"Job {job_name} disappeared")


def check_pending_pods(ctx: Context, now: datetime) -> None:
    """Sweep part: a restore pod stuck on a missing Secret says so on its DatabaseRestore (the
    Job keeps waiting: once the Secret exists, the kubelet starts the pod)."""
    from learnops_operator.sweep import missing_secret  # the backup sweep's evidence rules

    selector = f"app.kubernetes.io/component={jobpods.COMPONENT_RESTORE}"
    grace = ctx.settings.pending_grace_seconds
    for pod in ctx.kube.backup_pods(ctx.settings.namespace, selector):
        meta = pod["metadata"]
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        created = results.parse_time(meta.get("creationTimestamp")) or now
        if (now - created).total_seconds() < grace:
            continue
        key = (
            str(meta["namespace"]),
            str((meta.get("labels") or {}).get("app.kubernetes.io/instance")),
        )
        body = ctx.restores.get(key)
        why = missing_secret(ctx, pod) if body is not None else None
        if body is None or why is None:
            continue
        target = (body.get("spec") or {}).get("target") or {}
        ref = target.get("pgpassSecretRef") or target.get("urlSecretRef") or {}
        message = f"Secret {ref.get('name')!r} not found or incomplete: {why}"

        def mutate(
            st: Mapping[str, Any], _b: Mapping[str, Any], m: str = message
        ) -> dict[str, Any] | None:
            if st.get("phase") != "Running":
                return None
            gen = int(st.get("runGeneration") or 0)
            new = status.set_condition(st, SUCCEEDED, "Unknown", "SecretNotFound", m, gen, now)
            new.update({"reason": "SecretNotFound", "message": m})
            return new

        written = _write(ctx, body, mutate)
        if written is not None and written[0].get("reason") != "SecretNotFound":
            ctx.kube.post_event(body, "Warning", "SecretNotFound", message)


def retry_pending(ctx: Context, now: datetime) -> None:
    """Sweep part: restores waiting for a backup or PVC, and lost Job creations."""
    for key, body in list(ctx.restores.items()):
        st = body.get("status") or {}
        if st.get("phase") == "Running" and st.get("jobName"):
            if not ctx.kube.job_exists(key[0], str(st["jobName"])):
                _lost(ctx, body, str(st["jobName"]), now)
            continue
        if needs_run(body):
            fresh = ctx.kube.get_backup(*key, plural=RESTORE_PLURAL)
            if fresh is not None:
                start(ctx, fresh)
