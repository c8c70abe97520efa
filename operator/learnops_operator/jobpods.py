"""Jobs that run the dump image for restores and restore drills, in the backup pod's hardening.

The pod- and container-level security settings, the tmpfs /tmp, the Secret-volume layout and the
termination-message policy are the backup pod's (builders.py); a unit test holds them equal. The
storage volume is mounted read-only: a restore or drill never writes to the backups.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from learnops_operator import builders, ours
from learnops_operator.restorespec import DrillSpec, RestoreSpec, Server, Storage
from learnops_operator.spec import API_VERSION, KIND, URL_KEYS, Owner

COMPONENT_RESTORE = "restore"
COMPONENT_DRILL = "drill"
RESTORE_API_VERSION = API_VERSION
RESTORE_KIND = "DatabaseRestore"
GENERATION_ANNOTATION = "learnops.io/restore-generation"
ARTIFACT_ANNOTATION = "learnops.io/drill-artifact"
# An encrypted source's age identity, as a file (the runner's BACKUP_AGE_IDENTITY_FILE).
IDENTITY_DIR = "/var/run/secrets/learnops/age"
IDENTITY_FILE = "identity"


def restore_job_name(name: str, generation: int) -> str:
    """One Job per generation: a repeat (restart, second replica) hits AlreadyExists."""
    return f"{name}-restore-g{generation}"


def drill_cronjob_name(backup: str) -> str:
    return f"{backup}-drill"


def drill_job_name(backup: str, artifact: str) -> str:
    """One drill per artifact after its backup (afterEveryBackup)."""
    return f"{backup}-drill-{hashlib.sha256(artifact.encode()).hexdigest()[:10]}"


def server_env(server: Server, dbname: str | None) -> list[tuple[str, str]]:
    if server.pgpass_secret is not None:
        items = [("PGHOST", str(server.host)), ("PGPORT", str(server.port or 5432))]
        if dbname:
            items.append(("PGDATABASE", dbname))
        items += [
            ("PGUSER", str(server.user)),
            ("PGPASSFILE", f"{builders.SECRET_DIR}/{server.pgpass_key}"),
        ]
    else:
        items = [(f"{k}_FILE", f"{builders.SECRET_DIR}/{k}") for k in URL_KEYS]
    return [*items, ("PGSSLMODE", server.ssl_mode)]


def _secret_volume(server: Server) -> dict[str, Any]:
    secret: dict[str, Any] = {
        "secretName": server.secret_name,
        "defaultMode": builders.SECRET_FILE_MODE,
    }
    if server.pgpass_secret is not None:
        secret["items"] = [{"key": server.pgpass_key, "path": server.pgpass_key}]
    return {"name": "db-credentials", "secret": secret}


def _pod(
    *,
    labels: dict[str, str],
    image: str,
    pull_policy: str,
    args: list[str],
    env: list[tuple[str, str]],
    storage: Storage,
    server: Server,
    resources: dict[str, Any],
    identity: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    volumes, mounts = _storage_volumes(storage)
    if identity is not None:
        volumes.append(identity[0])
        mounts.append(identity[1])
    container = {
        "name": builders.CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in env],
        "resources": resources,
        "volumeMounts": [
            *mounts,
            {"name": "db-credentials", "mountPath": builders.SECRET_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": builders.TMP_DIR},
        ],
        "terminationMessagePath": builders.TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": builders.RUNNER_UID,
            "runAsGroup": builders.RUNNER_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
            "privileged": False,
        },
    }
    return {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "Never",
            # As the backup pod (builders.pod_template): set explicitly, never the spec's.
            "serviceAccountName": "default",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "shareProcessNamespace": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": builders.RUNNER_UID,
                "runAsGroup": builders.RUNNER_UID,
                "fsGroup": builders.RUNNER_UID,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                *volumes,
                _secret_volume(server),
                {
                    "name": "tmp",
                    "emptyDir": {"medium": "Memory", "sizeLimit": builders.TMP_SIZE_LIMIT},
                },
            ],
        },
    }


def _storage_volumes(storage: Storage) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The source's volumes and mounts: the claim read-only, or a bucket's credentials."""
    if storage.objects is not None:
        return builders.object_volumes(storage.objects)
    mount: dict[str, Any] = {"name": "backup", "mountPath": builders.STORAGE_ROOT, "readOnly": True}
    if storage.sub_path:
        mount["subPath"] = storage.sub_path
    claim = {"claimName": storage.claim_name, "readOnly": True}
    return [{"name": "backup", "persistentVolumeClaim": claim}], [mount]


def _identity(secret_name: str | None, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The age identity's Secret (only its key), mounted as a file: never env."""
    if secret_name is None:
        return None
    secret = {
        "secretName": secret_name,
        "defaultMode": builders.SECRET_FILE_MODE,
        "items": [{"key": key, "path": IDENTITY_FILE}],
    }
    mount = {"name": "age-identity", "mountPath": IDENTITY_DIR, "readOnly": True}
    return {"name": "age-identity", "secret": secret}, mount


def artifact_prefix(job: Mapping[str, Any]) -> str:
    """The artifact prefix this Job was built for (its BACKUP_PREFIX), for reading its result."""
    for container in job["spec"]["template"]["spec"].get("containers") or ():
        for item in container.get("env") or ():
            if item.get("name") == "BACKUP_PREFIX":
                return str(item.get("value") or "")
    return ""


def _runner_env(timeout: int, storage: Storage, identity: str | None) -> list[tuple[str, str]]:
    """Where the artifacts are, and the identity file's path when an identity is mounted."""
    if storage.objects is not None:
        where = builders.object_env(storage.objects)
    else:
        where = [("BACKUP_STORAGE_ROOT", builders.STORAGE_ROOT)]
    env = [
        *where,
        ("BACKUP_PREFIX", storage.prefix),
        ("BACKUP_TIMEOUT_SECONDS", str(timeout)),
        ("BACKUP_TERMINATION_LOG", builders.TERMINATION_LOG),
        ("TMPDIR", builders.TMP_DIR),
    ]
    if identity is not None:
        env.append(("BACKUP_AGE_IDENTITY_FILE", f"{IDENTITY_DIR}/{IDENTITY_FILE}"))
    return env


def restore_job(
    namespace: str,
    name: str,
    uid: str,
    generation: int,
    spec: RestoreSpec,
    storage: Storage,
    default_image: str,
) -> dict[str, Any]:
    """The Job of one generation of a DatabaseRestore."""
    labels = ours.labels(name, COMPONENT_RESTORE)
    env = server_env(spec.target, None) + _runner_env(
        spec.runner_timeout_seconds, storage, spec.identity_secret
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": restore_job_name(name, generation),
            "namespace": namespace,
            "labels": labels,
            "annotations": {GENERATION_ANNOTATION: str(generation)},
            "ownerReferences": [
                {
                    "apiVersion": RESTORE_API_VERSION,
                    "kind": RESTORE_KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "activeDeadlineSeconds": spec.timeout_seconds,
            # Once: a retry into a half-restored database would only be refused (ifEmpty).
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
            "podFailurePolicy": {
                "rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": _pod(
                labels=labels,
                image=spec.image or default_image,
                pull_policy=spec.image_pull_policy,
                args=spec.args(),
                env=env,
                storage=storage,
                server=spec.target,
                resources=dict(spec.resources),
                identity=_identity(spec.identity_secret, spec.identity_key),
            ),
        },
    }


def _drill_template(
    owner: Owner, drill: DrillSpec, storage: Storage, image: str, pull: str, artifact: str
) -> tuple[dict[str, str], dict[str, Any]]:
    labels = ours.labels(owner.name, COMPONENT_DRILL)
    env = server_env(drill.server, None) + _runner_env(
        drill.runner_timeout_seconds, replace(storage, prefix=owner.name), drill.identity_secret
    )
    if drill.assertions:
        items = [{"name": n, "sql": q} for n, q in drill.assertions]
        env.append(("DRILL_ASSERTIONS", json.dumps(items, separators=(",", ":"))))
    args = ["drill", artifact]
    return labels, _pod(
        labels=labels,
        image=image,
        pull_policy=pull,
        args=args,
        env=env,
        storage=storage,
        server=drill.server,
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        identity=_identity(drill.identity_secret, drill.identity_key),
    )


def with_source(template: dict[str, Any], source_endpoint: str | None) -> dict[str, Any]:
    """The drill refuses the source's host:port (known here when the backup uses pgpass)."""
    if source_endpoint:
        container = template["spec"]["containers"][0]
        container["args"] = [*container["args"], "--source", source_endpoint]
    return template


def _owner_ref(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _drill_job_spec(drill: DrillSpec, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "activeDeadlineSeconds": drill.timeout_seconds,
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 86400,
        "template": template,
    }


def drill_job(
    owner: Owner,
    drill: DrillSpec,
    storage: Storage,
    image: str,
    pull: str,
    artifact: str,
    source_endpoint: str | None,
) -> dict[str, Any]:
    """A drill of one artifact, right after its backup (afterEveryBackup)."""
    labels, template = _drill_template(owner, drill, storage, image, pull, artifact)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": drill_job_name(owner.name, artifact),
            "namespace": owner.namespace,
            "labels": {**labels, builders.TRIGGER_LABEL: "after-backup"},
            "annotations": {ARTIFACT_ANNOTATION: artifact},
            "ownerReferences": [_owner_ref(owner)],
        },
        "spec": _drill_job_spec(drill, with_source(template, source_endpoint)),
    }


def drill_cronjob(
    owner: Owner,
    drill: DrillSpec,
    storage: Storage,
    image: str,
    pull: str,
    time_zone: str,
    suspend: bool,
    source_endpoint: str | None,
) -> dict[str, Any]:
    """Scheduled drills of the newest successful artifact (latest.json)."""
    labels, template = _drill_template(owner, drill, storage, image, pull, "latest")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": drill_cronjob_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [_owner_ref(owner)],
        },
        "spec": {
            "schedule": drill.schedule or "@daily",
            "timeZone": time_zone,
            "suspend": suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": {**labels, builders.TRIGGER_LABEL: "scheduled"}},
                "spec": _drill_job_spec(drill, with_source(template, source_endpoint)),
            },
        },
    }
