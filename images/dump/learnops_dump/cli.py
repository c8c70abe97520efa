"""Command line: `learnops-dump run | restore ARTIFACT --target-db DB | verify ARTIFACT`.

The only place that reads os.environ and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from . import __version__, errors
from .artifacts import Artifact
from .credentials import private_pgpass
from .logs import configure, event
from .masking import mask
from .pipeline import tree_digest
from .procs import Supervisor, child_env
from .restore import restore_into
from .runner import run
from .settings import Settings, help_table
from .storage import MANIFEST_SUFFIX
from .verify import artifact_path, verify_list
from .versions import choose_client, installed_clients, probe_server

log = logging.getLogger(__name__)

EXIT_CODES = [
    (cls.exit_code, cls.reason, (cls.__doc__ or "").strip())
    for cls in (
        errors.ConfigError,
        errors.ConnectionFailed,
        errors.DumpFailed,
        errors.TimedOut,
        errors.StorageFailed,
        errors.VerificationFailed,
        errors.VersionMismatch,
        errors.InternalError,
    )
]


def _epilog() -> str:
    width = max(len(env) for env, _, _ in help_table())
    lines = ["settings (environment variables):"]
    lines += [f"  {env:<{width}}  {doc} [default: {default}]" for env, default, doc in help_table()]
    lines += [
        "",
        "connection (first non-empty wins; a plain NAME beats its NAME_FILE, a missing file",
        "counts as unset; the password only ever goes into a private 0600 pgpass copy):",
        "  SESSION_DATABASE_URL[_FILE], BACKUP_DATABASE_URL[_FILE], DATABASE_URL[_FILE],",
        "  else PGHOST/PGPORT/PGDATABASE/PGUSER/PGSSLMODE with PGPASSFILE (PGPASSWORD is refused)",
    ]
    lines += ["", "exit codes:", "  0  Ok"]
    lines += [f"  {code}  {reason}: {doc}" for code, reason, doc in sorted(EXIT_CODES)]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="learnops-dump",
        description="Streaming, timeout-safe, secret-safe pg_dump runner.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run", help="perform one backup (the default)")
    restore = sub.add_parser("restore", help="restore an artifact into an existing database")
    restore.add_argument("artifact", help="artifact file/dir name (relative to the storage root)")
    restore.add_argument("--target-db", required=True, help="database to restore into")
    restore.add_argument("--jobs", type=int, default=1, help="parallel jobs (directory format)")
    restore.add_argument(
        "--no-owner", action="store_true", help="skip ownership and privileges (non-owner role)"
    )
    verify = sub.add_parser("verify", help="check an artifact's checksum and table of contents")
    verify.add_argument("artifact", help="artifact file/dir name (relative to the storage root)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure()
    try:
        settings = Settings.from_env(os.environ)
    except errors.RunnerError as exc:
        if args.command in (None, "run"):
            # still tell Kubernetes why; settings never got as far as a storage root
            _config_failure(exc)
        log.error(mask(exc.message), extra={"event": "settings.invalid"})
        return exc.exit_code
    try:
        if args.command == "restore":
            return _restore(settings, args.artifact, args.target_db, args.jobs, args.no_owner)
        if args.command == "verify":
            return _verify(settings, args.artifact)
        return run(settings)
    except errors.RunnerError as exc:
        log.error(
            mask(exc.message), extra={"event": f"{args.command}.failed", "reason": exc.reason}
        )
        return exc.exit_code


def _config_failure(exc: errors.RunnerError) -> None:
    from .report import Report, termination_message

    path = os.environ.get("BACKUP_TERMINATION_LOG") or "/dev/termination-log"
    report = Report(datetime.now(UTC), "", "", "", "", "")
    report.fail(exc)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_message(report.summary()))
    except OSError:
        pass


def _check_sha(settings: Settings, artifact: Artifact) -> None:
    """Compare with the manifest next to the artifact, if there is one."""
    stem = artifact.path.name
    for suffix in (".zst", ".lz4", ".gz", ".dump", ".sql", ".dir"):
        stem = stem.removesuffix(suffix)
    manifest = artifact.path.with_name(stem + MANIFEST_SUFFIX)
    if not manifest.exists():
        event(log, "verify.no_manifest", "no manifest beside the artifact; sha256 not checked")
        return
    import json

    expected = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
    if artifact.path.is_dir():
        actual = tree_digest(artifact.path)[1]
    else:
        import hashlib

        digest = hashlib.sha256()
        with open(artifact.path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        actual = digest.hexdigest()
    if expected != actual:
        raise errors.VerificationFailed(f"{artifact.path.name}: sha256 differs from its manifest")


def _verify(settings: Settings, name: str) -> int:
    artifact = Artifact.of(artifact_path(settings.storage_root, name))
    if not artifact.path.exists():
        raise errors.ConfigError(f"{name}: no such artifact")
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise errors.ConfigError("no pg_restore found (BACKUP_PG_CLIENT_DIRS)")
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals():
        try:
            _check_sha(settings, artifact)
            env = child_env({}, None, str(settings.tmpdir))
            entries = verify_list(sup, clients[-1], artifact, env)
        finally:
            sup.close()
    event(log, "verify.ok", "artifact verified", artifact=artifact.path.name, tocEntries=entries)
    return 0


def _restore(settings: Settings, name: str, target_db: str, jobs: int, no_owner: bool) -> int:
    artifact = Artifact.of(artifact_path(settings.storage_root, name))
    if not artifact.path.exists():
        raise errors.ConfigError(f"{name}: no such artifact")
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise errors.ConfigError("no pg_restore found (BACKUP_PG_CLIENT_DIRS)")
    target = replace(settings.target, params=(*settings.target.params, ("PGDATABASE", target_db)))
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals(), private_pgpass(target, settings.tmpdir) as passfile:
        try:
            _check_sha(settings, artifact)
            params = dict(target.params)
            params.setdefault("PGCONNECT_TIMEOUT", str(settings.connect_timeout))
            env = child_env(params, str(passfile) if passfile else None, str(settings.tmpdir))
            server = probe_server(sup, clients[-1].tool("psql"), env)
            client = choose_client(clients, server.major)
            restore_into(sup, client, artifact, env, scratch=no_owner, jobs=jobs)
        finally:
            sup.close()
    event(log, "restore.ok", "artifact restored", artifact=artifact.path.name, database=target_db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
