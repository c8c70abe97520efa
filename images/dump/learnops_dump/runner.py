"""`learnops-dump run`: one backup, as direct as a shell script, one step per function.

check storage -> private pgpass -> probe server -> pick pg_dump -> stream dump
-> verify -> rename -> manifest + latest.json -> prune. Whatever fails, the
manifest (if storage allows) and the termination message are still written.
"""

from __future__ import annotations

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
from .storage import LATEST, MANIFEST_SUFFIX, Storage
from .verify import verify_list, verify_restore
from .versions import Client, choose_client, client_version, installed_clients, probe_server

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    """Perform one backup; returns the exit code (never raises)."""
    report = Report(
        started=datetime.now(UTC),
        database=settings.target.dbname,
        host=settings.target.host,
        format=settings.format.value,
        compression=str(settings.compression),
        credential_source=settings.target.source,
    )
    event(log, "run.start", "backup started", database=report.database, host=report.host)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    storage: Storage | None = None
    stem: str | None = None
    with sup.handle_signals():
        try:
            storage = Storage(settings.require_storage_root())
            storage.check()
            storage.clean_leftovers()
            stem = storage.unique_stem(f"{settings.prefix}-{report.started:%Y%m%dT%H%M%SZ}")
            _backup(settings, sup, storage, stem, report)
        except RunnerError as exc:
            report.fail(exc)
        except Exception as exc:  # a bug: still leave a manifest and a termination message
            log.error("internal error", extra={"event": "run.internal_error"}, exc_info=True)
            report.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
        finally:
            sup.close()
        report.finished = datetime.now(UTC)
        if storage is not None and stem is not None:
            _record(settings, storage, stem, report)
        _terminate(settings.termination_log, report)
    return report.exit_code


def _backup(
    settings: Settings, sup: Supervisor, storage: Storage, stem: str, report: Report
) -> None:
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
            storage.commit(name)
        except BaseException:
            storage.discard(name)
            raise
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
    entries = verify_list(sup, client, artifact, env)
    report.verification = {"mode": "list", "tocEntries": entries}
    if settings.verify is VerifyMode.RESTORE:
        tables = verify_restore(sup, client, artifact, env)
        report.verification = {"mode": "restore", "tocEntries": entries, "tables": tables}
    event(log, "run.verified", "artifact verified", **report.verification)


def _record(settings: Settings, storage: Storage, stem: str, report: Report) -> None:
    """Manifest always; latest.json and pruning only after a success."""
    try:
        storage.write_json(f"{stem}{MANIFEST_SUFFIX}", report.manifest())
        if report.ok:
            storage.write_json(LATEST, report.manifest())
    except StorageFailed as exc:
        report.fail(exc)
        return
    if report.ok:
        report.pruned = prune(
            storage,
            settings.prefix,
            settings.retention,
            settings.failed_retention_days,
            datetime.now(UTC),
        )


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
