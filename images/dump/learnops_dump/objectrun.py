"""`learnops-dump run` to object storage: the same steps and rules as on a PVC.

probe server -> pick pg_dump -> stream pg_dump -> compressor -> [age] -> multipart upload
(completed only if every stage succeeded, else aborted) -> verify by streaming the object
back (deleted again if that fails) -> manifest -> `<prefix>.latest.json` -> GFS pruning
(retention.py, the PVC's rules: only after a success, never the newest good one).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from . import artifacts
from .artifacts import AGE_SUFFIX, Artifact
from .credentials import private_pgpass
from .encryption import encrypt_argv, fingerprint
from .errors import ConfigError, InternalError, RunnerError, StorageFailed
from .logs import event
from .masking import mask
from .objects import ObjectStorage
from .partsize import objects_for, part_size
from .pipeline import Outcome, make_plan
from .procs import Supervisor, child_env
from .queries import query
from .remote import verify_stored
from .report import Report, start_report
from .retention import prune
from .settings import DumpFormat, Settings, VerifyMode
from .snapshot import Session, snapshot_session
from .upload import stream_upload
from .versions import (
    Client,
    choose_client,
    client_version,
    installed_clients,
    probe_server,
    system_identifier,
)

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """One backup to the bucket; returns the exit code (never raises)."""
    from .runner import _refuse, _terminate  # the one writer of the termination message

    if problem := unsupported(settings):  # before the bucket is touched: nothing to clean up
        return _refuse(settings, ConfigError(problem))
    report = start_report(settings)
    event(log, "run.start", "backup started", database=report.database, host=report.host)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    storage: ObjectStorage | None = None
    stem: str | None = None
    with sup.handle_signals():
        try:
            assert settings.bucket is not None
            storage = ObjectStorage(settings.bucket, settings.object_timeout_seconds)
            storage.prefix = settings.prefix
            storage.check()
            stem = _unique_stem(storage, settings.prefix, report.started)
            _backup(settings, sup, storage, stem, report)
        except RunnerError as exc:
            report.fail(sup.as_stop(exc))
        except Exception as exc:  # a bug: still leave a manifest and a termination message
            log.error("internal error", extra={"event": "run.internal_error"}, exc_info=True)
            report.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
        finally:
            sup.close()
        report.finish()
        if storage is not None and stem is not None:
            _record(settings, storage, stem, report)
        _terminate(settings.termination_log, report)
    return report.exit_code


def unsupported(settings: Settings) -> str | None:
    """What a bucket run refuses: one database per run (docs/dump.md, "Object storage")."""
    if settings.databases or settings.all_databases:
        return (
            "BACKUP_DATABASES/BACKUP_ALL_DATABASES need a PVC: object storage takes one "
            "database per run (one DatabaseBackup per database)"
        )
    if settings.dump_globals:
        return "BACKUP_GLOBALS needs a PVC: object storage takes one database per run"
    return None


def _unique_stem(storage: ObjectStorage, prefix: str, started: datetime) -> str:
    n = 0
    while storage.exists(artifacts.manifest_name(artifacts.stem_for(prefix, started, n))):
        n += 1
    return artifacts.stem_for(prefix, started, n)


def _backup(
    settings: Settings, sup: Supervisor, storage: ObjectStorage, stem: str, report: Report
) -> None:
    if settings.format is DumpFormat.DIRECTORY:
        raise ConfigError("BACKUP_FORMAT=directory needs a PVC (object storage: custom/plain)")
    if settings.verify is VerifyMode.RESTORE:
        raise ConfigError("BACKUP_VERIFY=restore needs a PVC; object storage verifies with list")
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no pg_dump found (BACKUP_PG_CLIENT_DIRS)")
    tmpdir = settings.tmpdir
    with private_pgpass(settings.target, tmpdir) as passfile:
        params = dict(settings.target.params)
        params.setdefault("PGCONNECT_TIMEOUT", str(settings.connect_timeout))
        env = child_env(params, str(passfile) if passfile else None, str(tmpdir))
        server = probe_server(sup, clients[-1].tool("psql"), env)
        report.server_version = server.text
        report.system_identifier = system_identifier(sup, clients[-1].tool("psql"), env)
        client = choose_client(clients, server.major)
        report.client_version = client_version(sup, client, env)
        plan = make_plan(settings.format, settings.compression, client.major)
        recipients = settings.age_recipients
        encryptor = encrypt_argv(recipients) if recipients else None
        if recipients:
            report.encryption = {"tool": "age", "recipients": [fingerprint(r) for r in recipients]}
        name = stem + plan.extension + (AGE_SUFFIX if encryptor else "")
        expected = _expected_size(settings, sup, client, storage, env)
        parts = settings.segment_parts
        part = part_size(expected, parts)
        event(
            log, "run.part_size", "multipart plan", partBytes=part, partsPerObject=parts,
            expectedBytes=expected, expectedObjects=objects_for(expected, part, parts),
        )  # fmt: skip
        outcome = Outcome()
        uploaded = False
        stack = contextlib.ExitStack()
        # Row counts in the dump's own snapshot (snapshot.py), as a PVC run records them: what
        # a restore or drill from the bucket checks the restored tables against.
        session: Session | None = None
        if settings.row_counts:
            session = stack.enter_context(snapshot_session(sup, client, env, str(tmpdir)))
            plan = replace(plan, dump_args=(*plan.dump_args, f"--snapshot={session.snapshot}"))
        try:
            stream_upload(
                sup,
                client.tool("pg_dump"),
                plan,
                encryptor,
                env,
                lambda: storage.upload(name, part, parts),
                tmpdir,
                outcome,
            )
            uploaded = True
            event(log, "run.uploaded", "dump uploaded", size=outcome.size, **storage.location(name))
            if session is not None:
                report.table_row_counts = session.row_counts()
            stack.close()
            if settings.verify is VerifyMode.NONE:
                report.verification = {"mode": "none"}
            else:
                report.verification = verify_stored(
                    sup,
                    client,
                    storage.download(name),
                    Artifact.of(Path(name)),
                    env,
                    settings.age_identity_file,
                    {"sha256": outcome.sha256, "sizeBytes": outcome.size},
                )
                event(log, "run.verified", "artifact verified", **report.verification)
            sup.check()
        except BaseException:
            if uploaded:  # never leave an unverified object under a final name
                try:
                    storage.remove(name)
                except OSError as exc:
                    log.warning(
                        "could not delete the failed upload",
                        extra={"event": "run.cleanup_failed", "error": str(exc)},
                    )
            raise
        finally:
            stack.close()
            report.stages = [{"name": s.name, "exitCode": s.exit_code} for s in outcome.stages]
        report.artifact, report.size, report.sha256 = name, outcome.size, outcome.sha256
        report.location = storage.location(name)


def _expected_size(
    settings: Settings,
    sup: Supervisor,
    client: Client,
    storage: ObjectStorage,
    env: dict[str, str],
) -> int:
    """The larger of the database's size and the last good backup's (or the setting)."""
    if settings.expected_size is not None:
        return settings.expected_size
    latest = storage.read_json(artifacts.latest_name(settings.prefix)) or {}
    previous = latest.get("sizeBytes") if isinstance(latest.get("sizeBytes"), int) else 0
    rc, out, _ = sup.run(
        [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-f", "-"],
        env,
        stdin=query("database_size").encode(),
    )
    size = int(out.strip()) if rc == 0 and out.strip().isdigit() else 0
    return max(size, int(previous or 0))


def _record(settings: Settings, storage: ObjectStorage, stem: str, report: Report) -> None:
    """The manifest always; for a success `latest` after it, then pruning."""
    try:
        storage.write_json(artifacts.manifest_name(stem), report.manifest())
        if report.ok:
            storage.write_json(artifacts.latest_name(settings.prefix), report.manifest())
    except StorageFailed as exc:
        if report.ok and report.artifact:  # never a final-named artifact without its manifest
            with contextlib.suppress(OSError):
                storage.remove(report.artifact)
        report.fail(exc)
        return
    if not report.ok:
        return
    try:
        report.pruned, warnings = prune(
            storage,  # type: ignore[arg-type]  # the Storage surface retention reads
            settings.retention,
            settings.failed_retention_days,
            datetime.now(UTC),
            {report.artifact or ""} - {""},
        )
    except Exception as exc:  # pruning never fails a backup that is already published
        log.error("retention failed", extra={"event": "retention.error"}, exc_info=True)
        warnings = [f"retention: {type(exc).__name__}: {exc}"]
    for text in warnings:
        report.warn(text)
    if report.pruned or report.warnings:
        try:
            storage.write_json(artifacts.manifest_name(stem), report.manifest())
        except StorageFailed as exc:
            log.warning(exc.message, extra={"event": "run.manifest_update_failed"})
