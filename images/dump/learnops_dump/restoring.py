"""`learnops-dump restore`: one artifact into one database, with a policy, a guard and checks.

resolve artifact (name or latest) -> sha256 against its manifest -> private pgpass -> probe the
server -> refuse the source database -> apply the policy (create / ifEmpty / clean) -> pg_restore
-> compare every table's row count with the manifest -> summary (termination message).
From a bucket the artifact streams into pg_restore (decrypted, decompressed on the way, one
transaction) and its sha256 is checked before the stream's last chunk is let through.
Whatever fails, the summary says why; a database this run created is dropped again on failure.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .artifacts import Artifact
from .commands import globals_path, written_by
from .credentials import private_pgpass
from .errors import ConfigError, ConnectionFailed, InternalError, RestoreRefused, RunnerError
from .logs import event
from .masking import mask
from .outcome import RunSummary, write_summary
from .procs import Supervisor, child_env
from .roles import apply_globals
from .settings import Settings
from .sources import load_source, open_source
from .targets import (
    LoadOptions,
    compare_counts,
    create_database,
    database_exists,
    drop_database,
    manifest_counts,
    refuse_mismatches,
    relation_count,
    system_identifier,
)
from .verify import archive_database, check_manifest, check_source
from .versions import choose_client, client_version, installed_clients, probe_server
from .versions import system_identifier as psql_system_identifier

log = logging.getLogger(__name__)


class Policy(enum.Enum):
    CREATE = "create"
    IF_EMPTY = "ifEmpty"
    CLEAN = "clean"


@dataclass(frozen=True)
class RestoreRequest:
    artifact: str
    """An artifact name relative to the storage root, or "latest"."""
    dbname: str
    policy: Policy = Policy.IF_EMPTY
    options: LoadOptions = field(default_factory=LoadOptions)
    check_rows: bool = True
    allow_source_target: bool = False
    allow_other_source: bool = False
    """Skip the check that the artifact comes from the server and database restored into
    (verify.check_source); DatabaseRestore Jobs pass it: they name their source explicitly."""
    force: bool = False
    """Accept an artifact without a manifest (nothing then vouches for it)."""
    with_globals: bool = False
    """Apply the run's roles and globals script first (its own manifest checked), after the
    policy has accepted the target."""
    maintenance_db: str = "postgres"
    """Where CREATE DATABASE runs (the connection's own database may not exist on the target)."""


def restore(settings: Settings, request: RestoreRequest) -> int:
    """Restore, always write the summary; returns the exit code (never raises)."""
    summary = RunSummary(datetime.now(UTC), kind="restore")
    summary.extra.update({"database": request.dbname, "policy": request.policy.value})
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals():
        try:
            _restore(settings, sup, request, summary)
        except RunnerError as exc:
            summary.fail(exc)
        except Exception as exc:  # a bug: still leave a termination message
            log.error("internal error", extra={"event": "restore.internal_error"}, exc_info=True)
            summary.fail(InternalError(mask(f"{type(exc).__name__}: {exc}")))
        finally:
            sup.close()
    return write_summary(settings.termination_log, summary)


def _restore(
    settings: Settings, sup: Supervisor, request: RestoreRequest, summary: RunSummary
) -> None:
    source = open_source(settings, sup, request.artifact, force=request.force, summary=summary)
    artifact, manifest, bucket = source.artifact, source.manifest, source.bucket
    roles = None
    if request.with_globals:
        if bucket is not None:
            raise ConfigError(
                "--with-globals needs a PVC: backups on object storage hold no globals"
            )
        roles = Artifact.of(globals_path(artifact))
        check_manifest(sup, roles, force=False)  # nothing unvouched runs as the superuser
    summary.extra["format"] = artifact.format.value
    summary.sha256 = (manifest or {}).get("sha256") if manifest else None
    summary.size = (manifest or {}).get("sizeBytes") if manifest else None
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no PostgreSQL client found (BACKUP_PG_CLIENT_DIRS)")
    target = replace(
        settings.target,
        params=(*[p for p in settings.target.params if p[0] != "PGDATABASE"],),
    )
    maintenance = request.maintenance_db
    with private_pgpass(target, settings.tmpdir) as passfile:
        params = dict(target.params)
        params.setdefault("PGCONNECT_TIMEOUT", str(settings.connect_timeout))
        base = child_env(params, str(passfile) if passfile else None, str(settings.tmpdir))
        admin = {**base, "PGDATABASE": maintenance}
        into = {**base, "PGDATABASE": request.dbname}
        probe_env = admin if request.policy is Policy.CREATE else into
        try:
            server = probe_server(sup, clients[-1].tool("psql"), probe_env)
        except ConnectionFailed as exc:
            if probe_env is into and f'database "{request.dbname}" does not exist' in exc.message:
                raise RestoreRefused(
                    reason="TargetMissing",
                    message=f"database {request.dbname!r} does not exist; policy "
                    f"{request.policy.value} restores into an existing one (create makes one)",
                ) from None
            raise
        client = choose_client(clients, server.major, at_least=written_by(manifest))
        summary.extra["serverVersion"] = server.text
        summary.extra["clientVersion"] = client_version(sup, client, probe_env)
        if not request.allow_other_source:
            check_source(
                manifest,
                # a bucket's archive is not read twice: its manifest names the database
                None
                if bucket or artifact.encrypted
                else archive_database(sup, client, artifact, probe_env),
                settings.target.get("PGDATABASE") or None,  # the database this config backs up
                psql_system_identifier(sup, client.tool("psql"), probe_env),
            )
        _refuse_source(sup, client, probe_env, request, manifest)
        created = False
        if request.policy is Policy.CREATE:
            if database_exists(sup, client, admin, request.dbname):
                raise RestoreRefused(
                    reason="TargetExists",
                    message=f"database {request.dbname!r} exists; policy create only makes "
                    "new ones (use ifEmpty for an existing empty database)",
                )
            create_database(sup, client, admin, request.dbname)
            created = True
        elif request.policy is Policy.IF_EMPTY:
            held = relation_count(sup, client, into)
            if held:
                raise RestoreRefused(
                    reason="TargetNotEmpty",
                    message=f"database {request.dbname!r} holds {held} tables, views or sequences; "
                    "policy ifEmpty restores only into an empty database",
                )
        options = replace(request.options, clean=request.policy is Policy.CLEAN)
        try:
            if roles is not None:
                skipped = apply_globals(sup, client, roles.path, admin)
                summary.extra["globalsApplied"] = roles.path.name
                event(log, "restore.globals", "globals applied", artifact=roles.path.name,
                      skippedExisting=skipped)  # fmt: skip
            summary.extra["parallelJobs"] = load_source(
                sup, client, source, into, options, settings.age_identity_file
            )
            _check(sup, client, into, request, manifest, summary)
        except BaseException:
            if created:  # nothing half-restored under a name this run invented
                drop_database(client=client, sup=sup, env=admin, dbname=request.dbname)
            raise
    event(
        log,
        "restore.ok",
        "artifact restored",
        artifact=artifact.path.name,
        database=request.dbname,
        tablesChecked=summary.extra.get("tablesChecked"),
    )


def _refuse_source(
    sup: Supervisor,
    client: Any,
    env: dict[str, str],
    request: RestoreRequest,
    manifest: dict[str, Any] | None,
) -> None:
    """The source database (same cluster identity and name) is refused unless allowed."""
    source_id = str((manifest or {}).get("systemIdentifier") or "")
    if request.allow_source_target or not source_id:
        return
    if (
        system_identifier(sup, client, env) == source_id
        and (manifest or {}).get("database") == request.dbname
    ):
        raise RestoreRefused(
            reason="TargetIsSource",
            message=f"database {request.dbname!r} on this server is the backup's own source; "
            "set allowSourceTarget to restore over it",
        )


def _check(
    sup: Supervisor,
    client: Any,
    env: dict[str, str],
    request: RestoreRequest,
    manifest: dict[str, Any] | None,
    summary: RunSummary,
) -> None:
    expected = manifest_counts(manifest)
    if expected is None or not request.check_rows:
        summary.extra["checksPassed"] = ["restored"]
        return
    rows = not request.options.schema_only
    check = compare_counts(sup, client, env, expected, rows=rows)
    summary.extra.update(
        {
            "tablesChecked": check.tables,
            "rowsChecked": check.rows if rows else 0,
            "mismatches": check.mismatches[:10],
        }
    )
    refuse_mismatches(check)
    summary.extra["checksPassed"] = ["restored", "tablesExist", *(["rowCounts"] if rows else [])]
