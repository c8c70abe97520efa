"""`learnops-dump run`: one backup, as direct as a shell script, one step per function.

reserve a name (storage) -> private pgpass -> probe server -> pick pg_dump -> stream dump
-> verify everything -> under the prefix lock: final name, manifest, latest, prune.
Whatever fails, the manifest (if storage allows) and the termination message are still
written, and no final-named artifact exists without its manifest.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .artifacts import Artifact
from .buckets import StorageKind
from .credentials import private_pgpass
from .databases import label, selected
from .errors import ConfigError, InternalError, RunnerError, StorageFailed, TimedOut
from .logs import event
from .masking import mask
from .pipeline import Outcome, make_plan, stream_dump
from .procs import Supervisor, child_env
from .report import Report, start_report, termination_message
from .retention import prune
from .roles import GLOBALS_MANIFEST_SUFFIX, GLOBALS_SUFFIX, dump_globals
from .settings import Settings, VerifyMode
from .snapshot import Session, snapshot_session
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
    if settings.storage_kind is not StorageKind.PVC:
        from .objectrun import run as run_to_bucket  # only bucket runs load the client

        return run_to_bucket(settings)
    if settings.age_recipients:  # never a silently unencrypted backup
        settings = replace(settings, age_recipients=())
        return _refuse(settings, ConfigError("BACKUP_AGE_RECIPIENTS needs object storage"))
    report = start_report(settings)
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


def _refuse(settings: Settings, error: RunnerError) -> int:
    """A configuration the PVC path cannot honour: say so like any failed run."""
    report = start_report(settings)
    report.fail(error)
    report.finish()
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
        names = selected(settings, sup, client, env)
        failures: list[RunnerError] = []
        if settings.dump_globals:
            failures += _globals(settings, sup, client, env, storage, stem, report)
            if failures and names is None:  # one database: fail before its dump
                raise failures[0]
        if names is None:
            _dump_single(settings, sup, client, env, storage, stem, report)
            return
        # Several databases: each runs even when an earlier one failed (the message names
        # every failed one); the deadline still ends them all. The first failure is the cause.
        report.databases = []
        for dbname in names:
            failures += _dump_part(
                settings, sup, client, {**env, "PGDATABASE": dbname}, storage, stem, report
            )
        if failures:
            raise type(failures[0])("; ".join(f.message for f in failures))


def _dump_single(
    settings: Settings,
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    storage: Storage,
    stem: str,
    report: Report,
) -> None:
    plan = make_plan(settings.format, settings.compression, client.major)
    name = stem + plan.extension
    outcome = Outcome()
    with contextlib.ExitStack() as stack:
        # Row counts in the dump's own snapshot (snapshot.py), for restores and drills.
        session: Session | None = None
        if settings.row_counts:
            session = stack.enter_context(snapshot_session(sup, client, env, str(settings.tmpdir)))
            plan = replace(plan, dump_args=(*plan.dump_args, f"--snapshot={session.snapshot}"))
        try:
            stream_dump(
                sup, client.tool("pg_dump"), plan, env, storage, name, settings.tmpdir, outcome
            )
            event(log, "run.dumped", "dump written", size=outcome.size, artifact=name)
            if session is not None:
                report.table_row_counts = session.row_counts()
            _verify(settings, sup, client, storage.temp_path(name), env, report)
            sup.check()
        finally:
            report.stages = [{"name": s.name, "exitCode": s.exit_code} for s in outcome.stages]
    report.artifact, report.size, report.sha256 = name, outcome.size, outcome.sha256


def _dump_part(
    settings: Settings,
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    storage: Storage,
    stem: str,
    report: Report,
) -> list[RunnerError]:
    """One database of several: its own artifact `<stem>.<label><ext>` and manifest line."""
    dbname = env["PGDATABASE"]
    line: dict[str, Any] = {"database": dbname, "status": "failed", "stages": []}
    assert report.databases is not None
    report.databases.append(line)
    plan = make_plan(settings.format, settings.compression, client.major)
    name = f"{stem}.{label(dbname)}{plan.extension}"
    outcome = Outcome()
    part = Report(report.started, dbname, report.host, report.format, report.compression, "")
    counts: dict[str, int] | None = None
    try:
        with contextlib.ExitStack() as stack:
            # each database's own row counts, in its dump's snapshot (as a single run's)
            if settings.row_counts:
                session = stack.enter_context(
                    snapshot_session(sup, client, env, str(settings.tmpdir))
                )
                plan = replace(plan, dump_args=(*plan.dump_args, f"--snapshot={session.snapshot}"))
            stream_dump(
                sup, client.tool("pg_dump"), plan, env, storage, name, settings.tmpdir, outcome
            )
            if settings.row_counts:
                counts = session.row_counts()
        _verify(settings, sup, client, storage.temp_path(name), env, part)
        sup.check()
    except RunnerError as exc:
        line.update(reason=exc.reason, message=mask(exc.message))
        failed = type(exc)(f"database {dbname!r}: {exc.message}")
        if isinstance(exc, TimedOut):
            raise failed from None  # the deadline ends the whole run
        return [failed]
    finally:
        line["stages"] = [{"name": s.name, "exitCode": s.exit_code} for s in outcome.stages]
    line.update(
        status="ok",
        artifact=name,
        sizeBytes=outcome.size,
        sha256=outcome.sha256,
        verification=part.verification,
    )
    if counts is not None:
        line["tableRowCounts"] = counts
    event(log, "run.dumped", "dump written", size=outcome.size, artifact=name)
    report.size = (report.size or 0) + outcome.size
    return []


def _globals(
    settings: Settings,
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    storage: Storage,
    stem: str,
    report: Report,
) -> list[RunnerError]:
    try:
        report.globals = dump_globals(
            sup,
            client,
            env,
            storage,
            stem + GLOBALS_SUFFIX,
            settings.tmpdir,
            role_passwords=settings.role_passwords,
        )
    except RunnerError as exc:
        report.globals = {"status": "failed", "reason": exc.reason, "message": mask(exc.message)}
        failed = type(exc)(f"globals: {exc.message}")
        if isinstance(exc, TimedOut):
            raise failed from None
        return [failed]
    report.globals["manifest"] = stem + GLOBALS_MANIFEST_SUFFIX
    event(log, "run.globals", "globals written", artifact=report.globals["artifact"])
    return []


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
    names = _published_names(report)
    if not report.ok or not names:
        _record_failure(storage, res, report)
        return
    committed: list[str] = []
    try:
        with storage.locked(wait_at_most(LOCK_WAIT_SECONDS)):
            try:
                for name in names:
                    storage.commit(name)
                    committed.append(name)
                if report.globals is not None:
                    storage.write_json(
                        report.globals["manifest"], report.globals_manifest(res.stem)
                    )
                    committed.append(report.globals["manifest"])
                storage.finish(res, report.manifest())
            except StorageFailed:
                for name in committed:  # never a final-named artifact without its manifest
                    with contextlib.suppress(OSError):
                        storage.remove(name)
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
    protect = {*_published_names(report), storage.latest_artifact() or ""} - {""}
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


def _published_names(report: Report) -> list[str]:
    """Every artifact a successful run gives its final name: its own, each database's,
    the globals."""
    names = [report.artifact] if report.artifact else []
    names += [str(d["artifact"]) for d in report.databases or () if d.get("status") == "ok"]
    if report.globals is not None and report.globals.get("status") == "ok":
        names.append(str(report.globals["artifact"]))
    return names


def _record_failure(storage: Storage, res: Reservation, report: Report) -> None:
    # A failed run publishes nothing (its temp files go with it): no line names a file.
    for line in [*(report.databases or ()), report.globals or {}]:
        for key in ("artifact", "sha256", "manifest"):
            line.pop(key, None)
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
