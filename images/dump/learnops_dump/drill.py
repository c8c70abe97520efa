"""`learnops-dump drill`: prove an artifact restorable on a scratch server, then drop it.

resolve artifact (a PVC file or a bucket object, sources.py) -> its manifest -> connect to the
scratch server -> refuse the source server (by host and by system identifier) -> create a scratch
database -> restore -> every table of the manifest exists -> row counts equal the manifest's
(counted at dump time) -> SQL assertions -> drop the scratch database (always, also after a
timeout or SIGTERM). The sha256 is checked against the manifest before the restore for a PVC
file, and while a bucket object streams in, before its last chunk (a mismatch rolls back).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .credentials import private_pgpass
from .errors import ConfigError, InternalError, RestoreRefused, RunnerError
from .logs import event
from .masking import mask
from .outcome import RunSummary, write_summary
from .procs import Supervisor, child_env
from .settings import Settings
from .sources import load_source, open_source
from .targets import (
    LoadOptions,
    compare_counts,
    create_database,
    drop_database,
    manifest_counts,
    refuse_mismatches,
    run_assertions,
    system_identifier,
)
from .versions import choose_client, installed_clients, probe_server

log = logging.getLogger(__name__)
MAX_ASSERTIONS = 20
MAX_ASSERTION_CHARS = 4096


@dataclass(frozen=True)
class DrillRequest:
    artifact: str = "latest"
    assertions: tuple[tuple[str, str], ...] = ()
    source_endpoints: tuple[str, ...] = ()
    """host:port of the source as the DatabaseBackup names it; the manifest's is added."""
    maintenance_db: str = "postgres"
    jobs: int = 1


def parse_assertions(raw: Any) -> tuple[tuple[str, str], ...]:
    """[{"name": ..., "sql": ...}, ...] from DRILL_ASSERTIONS (JSON), bounded."""
    if raw in (None, ""):
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ASSERTIONS:
        raise ConfigError(f"DRILL_ASSERTIONS: a JSON list of at most {MAX_ASSERTIONS} objects")
    out = []
    for item in raw:
        name, sql = (item or {}).get("name"), (item or {}).get("sql")
        if not isinstance(name, str) or not isinstance(sql, str) or not name or not sql:
            raise ConfigError("DRILL_ASSERTIONS: every item needs a name and an sql string")
        if len(sql) > MAX_ASSERTION_CHARS:
            raise ConfigError(f"DRILL_ASSERTIONS: {name!r} is longer than {MAX_ASSERTION_CHARS}")
        out.append((name[:63], sql))
    return tuple(out)


def endpoint(host: str, port: str) -> str:
    """host:port, normalised (case, trailing dot) so that spellings of one name compare equal."""
    return f"{host.strip().lower().rstrip('.')}:{port.strip() or '5432'}"


def drill(settings: Settings, request: DrillRequest) -> int:
    """Run one drill, always write the summary; returns the exit code (never raises)."""
    summary = RunSummary(datetime.now(UTC), kind="drill")
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals():
        try:
            _drill(settings, sup, request, summary)
        except RunnerError as exc:
            summary.fail(exc)
        except Exception as exc:  # a bug: still leave a termination message
            log.error("internal error", extra={"event": "drill.internal_error"}, exc_info=True)
            summary.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
        finally:
            sup.close()
    return write_summary(settings.termination_log, summary)


def _drill(settings: Settings, sup: Supervisor, request: DrillRequest, summary: RunSummary) -> None:
    source = open_source(settings, sup, request.artifact, force=False, summary=summary)
    name, manifest = source.name, source.manifest
    if manifest is None or manifest.get("status") != "ok" or not manifest.get("sha256"):
        raise ConfigError(f"{name}: no successful manifest beside it")
    summary.sha256, summary.size = manifest.get("sha256"), manifest.get("sizeBytes")
    source_id = str(manifest.get("systemIdentifier") or "")
    if not source_id.isdigit():
        raise ConfigError(
            f"{name}: its manifest records no systemIdentifier, so the scratch "
            "server cannot be proven different from the source; drill a newer backup"
        )
    # open_source checked a PVC file's size and sha256; a bucket object's sha256 is checked as
    # it streams in, so that check has only passed once the restore has
    passed: list[str] = ["checksum"] if source.bucket is None else []
    scratch = endpoint(settings.target.host, settings.target.port)
    known = {endpoint(*e.rpartition(":")[::2]) for e in request.source_endpoints if ":" in e}
    if manifest.get("host"):
        known.add(endpoint(str(manifest["host"]), str(manifest.get("port") or "5432")))
    if scratch in known:
        raise RestoreRefused(
            reason="ScratchIsSource",
            message=f"the scratch server {scratch} is the source server's host and port",
        )
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no PostgreSQL client found (BACKUP_PG_CLIENT_DIRS)")
    target = replace(
        settings.target, params=tuple(p for p in settings.target.params if p[0] != "PGDATABASE")
    )
    maintenance = settings.target.get("PGDATABASE") or request.maintenance_db
    with private_pgpass(target, settings.tmpdir) as passfile:
        params = dict(target.params)
        params.setdefault("PGCONNECT_TIMEOUT", str(settings.connect_timeout))
        base = child_env(params, str(passfile) if passfile else None, str(settings.tmpdir))
        admin = {**base, "PGDATABASE": maintenance}
        server = probe_server(sup, clients[-1].tool("psql"), admin)
        client = choose_client(clients, server.major)
        if system_identifier(sup, client, admin) == source_id:
            raise RestoreRefused(
                reason="ScratchIsSource",
                message="the scratch server has the source's system identifier (it is the source "
                "server or a physical replica of it)",
            )
        scratch_db = f"learnops_drill_{secrets.token_hex(6)}"
        summary.extra["scratchDatabase"] = scratch_db
        create_database(sup, client, admin, scratch_db)
        try:
            into = {**base, "PGDATABASE": scratch_db}
            options = LoadOptions(jobs=request.jobs, no_owner=True)
            summary.extra["parallelJobs"] = load_source(
                sup, client, source, into, options, settings.age_identity_file
            )
            if source.bucket is not None:
                passed.append("checksum")
            passed.append("restored")
            _checks(sup, client, into, manifest, request.assertions, passed, summary)
        finally:
            summary.extra["checksPassed"] = passed
            drop_database(sup, client, admin, scratch_db)
            summary.extra["scratchDropped"] = True
    event(log, "drill.ok", "artifact restorable", artifact=name, checks=passed)


def _checks(
    sup: Supervisor,
    client: Any,
    env: dict[str, str],
    manifest: dict[str, Any],
    assertions: Sequence[tuple[str, str]],
    passed: list[str],
    summary: RunSummary,
) -> None:
    expected = manifest_counts(manifest)
    if expected is None:
        raise ConfigError("the manifest records no tableRowCounts; drill a newer backup")
    check = compare_counts(sup, client, env, expected, rows=True)
    summary.extra["tablesChecked"] = check.tables
    summary.extra["rowsChecked"] = check.rows
    summary.extra["mismatches"] = check.mismatches[:10]
    missing = [m for m in check.mismatches if m.endswith(": missing")]
    refuse_mismatches(replace(check, mismatches=missing))
    passed.append("tablesExist")
    refuse_mismatches(check)
    passed.append("rowCounts")
    passed.extend(f"assertion:{name}" for name in run_assertions(sup, client, env, assertions))
