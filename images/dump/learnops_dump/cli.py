"""Command line: `learnops-dump run | restore ARTIFACT --target-db DB | drill ARTIFACT | verify`.

The only place that reads os.environ and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from . import __version__, errors
from .commands import verify_command
from .declare import help_text, value
from .drill import DrillRequest, drill, parse_assertions
from .logs import configure
from .masking import mask
from .outcome import RunSummary, write_summary
from .report import Report, termination_message
from .restoring import Policy, RestoreRequest, restore
from .runner import run
from .settings import Settings
from .storage import Storage, wait_at_most
from .targets import LoadOptions

log = logging.getLogger(__name__)

EXIT_CODES = [(cls.exit_code, cls.reason, (cls.__doc__ or "").strip()) for cls in errors.ERRORS]


def _epilog() -> str:
    lines = [help_text(Settings)]
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
    restore = sub.add_parser(
        "restore", help="restore an artifact into a database (policy, source guard, row counts)"
    )
    restore.add_argument(
        "artifact", help="artifact name (relative to the storage root) or 'latest' (latest.json)"
    )
    restore.add_argument("--target-db", required=True, help="database to restore into")
    restore.add_argument(
        "--policy",
        choices=[p.value for p in Policy],
        default=Policy.IF_EMPTY.value,
        help="create: a new database; ifEmpty: an existing one holding no tables (default); "
        "clean: drop the archive's objects first",
    )
    restore.add_argument(
        "--jobs", type=int, default=1, help="parallel jobs (directory or uncompressed custom)"
    )
    restore.add_argument(
        "--no-owner", action="store_true", help="skip ownership and privileges (non-owner role)"
    )
    restore.add_argument(
        "--allow-other-source",
        action="store_true",
        help="restore a backup of another database or server than this configuration's",
    )
    restore.add_argument(
        "--with-globals",
        action="store_true",
        help="first apply the run's roles and globals (BACKUP_GLOBALS); existing roles are kept",
    )
    restore.add_argument("--role", help="restore as this role, which then owns every object")
    restore.add_argument("--schema-only", action="store_true", help="restore only the schema")
    restore.add_argument(
        "--no-row-check",
        dest="check_rows",
        action="store_false",
        help="do not compare row counts with the manifest's",
    )
    restore.add_argument(
        "--allow-source-target",
        action="store_true",
        help="allow restoring over the backup's own source database",
    )
    restore.add_argument(
        "--maintenance-db",
        default="postgres",
        help="database to connect to for CREATE DATABASE (default: postgres)",
    )
    drill_p = sub.add_parser(
        "drill", help="restore on a scratch server, check against the manifest, drop it again"
    )
    drill_p.add_argument("artifact", nargs="?", default="latest", help="artifact name or latest")
    drill_p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an endpoint of the source server (refused as the scratch server); repeatable",
    )
    drill_p.add_argument("--jobs", type=int, default=1, help="parallel restore jobs")
    verify = sub.add_parser(
        "verify", help="check an artifact against its manifest and read every byte of it"
    )
    verify.add_argument("artifact", help="artifact file/dir name (relative to the storage root)")
    for cmd in (restore, verify):
        cmd.add_argument(
            "--force",
            action="store_true",
            help="accept an artifact without a manifest (nothing then vouches for it)",
        )
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
        elif args.command in ("restore", "drill"):
            _summary_failure(args.command, exc)
        log.error(mask(exc.message), extra={"event": "settings.invalid"})
        return exc.exit_code
    try:
        if args.command == "restore":
            if args.jobs < 1 or (args.role and not args.no_owner):
                bad = errors.ConfigError("--jobs must be >= 1; --role needs --no-owner")
                _summary_failure("restore", bad)
                return errors.ConfigError.exit_code
            return restore(settings, _restore_request(args))
        if args.command == "drill":
            try:
                request = _drill_request(args, settings.drill_assertions)
            except errors.RunnerError as exc:
                _summary_failure("drill", exc)
                raise
            return drill(settings, request)
        if args.command == "verify":
            return verify_command(settings, args.artifact, force=args.force)
        return run(settings)
    except errors.RunnerError as exc:
        command = args.command or "run"  # no command is a run
        log.error(mask(exc.message), extra={"event": f"{command}.failed", "reason": exc.reason})
        return exc.exit_code


def _restore_request(args: argparse.Namespace) -> RestoreRequest:
    return RestoreRequest(
        artifact=args.artifact,
        dbname=args.target_db,
        policy=Policy(args.policy),
        options=LoadOptions(
            jobs=args.jobs, schema_only=args.schema_only, no_owner=args.no_owner, role=args.role
        ),
        check_rows=args.check_rows,
        allow_source_target=args.allow_source_target,
        allow_other_source=args.allow_other_source,
        force=args.force,
        maintenance_db=args.maintenance_db,
        with_globals=args.with_globals,
    )


def _drill_request(args: argparse.Namespace, assertions: str) -> DrillRequest:
    try:
        raw = json.loads(assertions) if assertions.strip() else None
    except ValueError:
        raise errors.ConfigError("DRILL_ASSERTIONS: not valid JSON") from None
    return DrillRequest(
        artifact=args.artifact,
        assertions=parse_assertions(raw),
        source_endpoints=tuple(args.source),
        jobs=max(1, args.jobs),
    )


def _summary_failure(kind: str, exc: errors.RunnerError) -> None:
    """A restore or drill that cannot start still tells Kubernetes why."""
    summary = RunSummary(datetime.now(UTC), kind=kind)
    summary.fail(exc)
    write_summary(value(Settings, "termination_log", os.environ), summary)


def _config_failure(exc: errors.RunnerError) -> None:
    """Settings did not parse: still tell Kubernetes, and storage too if it is usable."""
    report = Report(datetime.now(UTC), "", "", "", "", "")
    report.fail(exc)
    report.finish()
    path = value(Settings, "termination_log", os.environ)
    with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as f:
        f.write(termination_message(report.summary()))
    root = value(Settings, "storage_root", os.environ)
    prefix = value(Settings, "prefix", os.environ)
    if root is None or prefix is None:
        return  # no root, or a prefix that does not parse: no storage to report in
    storage = Storage(root, prefix)
    with contextlib.suppress(errors.RunnerError, OSError):
        storage.open()
        with storage.locked(wait_at_most(10)):
            reservation = storage.reserve(report.started, report.placeholder())
        try:
            storage.finish(reservation, report.manifest())
        finally:
            storage.release(reservation)
    storage.close()


if __name__ == "__main__":
    sys.exit(main())
