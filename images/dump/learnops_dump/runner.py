"""`learnops-dump run`: one backup, as direct as a shell script, one step per function.

reserve a name (storage) -> private pgpass -> probe server -> pick pg_dump -> stream dump
-> verify everything -> under the prefix lock: final name, manifest, latest, prune.
Whatever fails, the manifest (if storage allows) and the termination message are still
written, and no final-named artifact exists without its manifest.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from .artifacts import Artifact
from .credentials import private_pgpass
from .errors import ConfigError, InternalError, RunnerError, StorageFailed
from .logs import event
from .masking import mask
from .pipeline import Outcome, make_plan, stream_dump
from .procs import Supervisor, child_env
from .report import Report, termination_message
from .retention import prune
from .settings import Settings, VerifyMode
from .storage import Reservation, Storage, wait_at_most
from .verify import verify_archive, verify_restore
from .versions import (
    Client,
    choose_client,
    client_version,
    installed_clients,
    probe_server,
    system_identifier,
)

log = logging.getLogger(__name__)
# How long publishing waits for another run of the prefix to finish its own (short) step.
LOCK_WAIT_SECONDS = 30


def run(settings: Settings) -> int:
    """Perform one backup; returns the exit code (never raises)."""
    report = Report(
        started=datetime.now(UTC),
        database=settings.target.dbname,
        host=settings.target.host,
        port=settings.target.port,
        format=settings.format.value,
        compression=str(settings.compression),
        credential_source=settings.target.source,
    )
    event(log, "run.start", "backup started", database=report.database, host=report.host)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    storage: Storage | None = None
    reservation: Reservation | None = None
    with sup.handle_signals():
        try:
            storage = Storage(settings.require_storage_root(), settings.prefix)
            if settings.storage_subdir and settings.storage_root is not None:
                storage.make_below(settings.storage_root)
            storage.open()
            with storage.locked(sup.check):
                storage.clean_dead_runs(report.started)
                reservation = storage.reserve(report.started, report.placeholder())
            _backup(settings, sup, storage, reservation.stem, report)
        except RunnerError as exc:
            report.fail(sup.as_stop(exc))
        except Exception as exc:  # a bug: still leave a manifest and a termination message
            log.error("internal error", extra={"event": "run.internal_error"}, exc_info=True)
            report.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
        finally:
            sup.close()
        report.finish()
        if storage is not None and reservation is not None:
            try:
                _record(settings, storage, reservation, report)
            except Exception as exc:  # a bug: the termination message must still be written
                log.error("internal error", extra={"event": "run.internal_error"}, exc_info=True)
                report.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
            finally:
                storage.release(reservation)
        if storage is not None:
            storage.close()
        _terminate(settings.termination_log, report)
    return report.exit_code


def _backup(
    settings: Settings, sup: Supervisor, storage: Storage, stem: str, report: Report
) -> None:
    """Dump and verify into this run's temporary name (publishing is `_record`'s)."""
    assert report.artifact is None
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
        event(
            log,
            "run.versions",
            "versions chosen",
            server=server.text,
            client=report.client_version,
            bindir=str(client.bindir),
        )
        plan = make_plan(settings.format, settings.compression, client.major)
        name = stem + plan.extension
        outcome = Outcome()
        try:
            stream_dump(sup, client.tool("pg_dump"), plan, env, storage, name, tmpdir, outcome)
            event(log, "run.dumped", "dump written", size=outcome.size, artifact=name)
            _verify(settings, sup, client, storage.temp_path(name), env, report)
            sup.check()
        finally:
            report.stages = [{"name": s.name, "exitCode": s.exit_code} for s in outcome.stages]
        report.artifact, report.size, report.sha256 = name, outcome.size, outcome.sha256


def _verify(
    settings: Settings,
    sup: Supervisor,
    client: Client,
    path: Path,
    env: dict[str, str],
    report: Report,
) -> None:
    if settings.verify is VerifyMode.NONE:
        report.verification = {"mode": "none"}
        return
    artifact = Artifact.of(path)
    entries = verify_archive(sup, client, artifact, env)
    report.verification = {"mode": "list", "tocEntries": entries, "dataRead": True}
    if settings.verify is VerifyMode.RESTORE:
        tables = verify_restore(sup, client, artifact, env)
        report.verification = {
            "mode": "restore",
            "tocEntries": entries,
            "dataRead": True,
            "tables": tables,
        }
    event(log, "run.verified", "artifact verified", **report.verification)


def _record(settings: Settings, storage: Storage, res: Reservation, report: Report) -> None:
    """The manifest always; for a success, under the prefix lock: the artifact's final name,
    its manifest, the `latest` pointer (if no newer run set it), then pruning."""
    if not report.ok or report.artifact is None:
        _record_failure(storage, res, report)
        return
    name = report.artifact
    try:
        with storage.locked(wait_at_most(LOCK_WAIT_SECONDS)):
            storage.commit(name)
            try:
                storage.finish(res, report.manifest())
            except StorageFailed:
                with contextlib.suppress(OSError):
                    storage.remove(name)  # never a final-named artifact without its manifest
                raise
            _publish(settings, storage, res, report)
    except StorageFailed as exc:
        report.fail(exc)
        _record_failure(storage, res, report)


def _publish(settings: Settings, storage: Storage, res: Reservation, report: Report) -> None:
    try:
        if not storage.point_latest(res, report.manifest()):
            event(log, "run.not_latest", "a newer run is already latest; pointer left alone")
    except StorageFailed as exc:
        report.warn(f"{exc.message}; the latest pointer still names an older backup")
    protect = {report.artifact or "", storage.latest_artifact() or ""} - {""}
    try:
        report.pruned, warnings = prune(
            storage,
            settings.retention,
            settings.failed_retention_days,
            datetime.now(UTC),
            protect,
        )
    except Exception as exc:  # pruning never fails a backup that is already published
        log.error("retention failed", extra={"event": "retention.error"}, exc_info=True)
        warnings = [f"retention: {type(exc).__name__}: {exc}"]
    for text in warnings:
        report.warn(text)
    if report.pruned or report.warnings:
        try:
            storage.write_json(res.manifest, report.manifest())
        except StorageFailed as exc:
            log.warning(exc.message, extra={"event": "run.manifest_update_failed"})


def _record_failure(storage: Storage, res: Reservation, report: Report) -> None:
    try:
        storage.finish(res, report.manifest())
    except StorageFailed as exc:
        log.warning(exc.message, extra={"event": "run.manifest_failed"})
        storage.fail_in_place(res, report.manifest())


def _terminate(path: Path, report: Report) -> None:
    summary = report.summary()
    text = termination_message(summary)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        log.warning(
            "cannot write the termination log",
            extra={"event": "run.termination_log", "error": exc.strerror},
        )
    level = logging.INFO if report.ok else logging.ERROR
    log.log(level, "backup finished", extra={"event": "run.finished", "summary": summary})
