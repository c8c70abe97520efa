"""Command line: `learnops-dump run | restore ARTIFACT --target-db DB | verify ARTIFACT`.

The only place that reads os.environ and maps exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import __version__, errors
from .commands import restore_command, verify_command
from .logs import configure
from .masking import mask
from .report import Report, termination_message
from .runner import run
from .settings import PREFIX_PATTERN, Settings, help_table
from .storage import Storage, wait_at_most

log = logging.getLogger(__name__)

EXIT_CODES = [(cls.exit_code, cls.reason, (cls.__doc__ or "").strip()) for cls in errors.ERRORS]


def _epilog() -> str:
    lines = ["settings (environment variables):"]
    for env, default, doc in help_table():
        lines += [f"  {env}", f"      {doc} [default: {default}]"]
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
        log.error(mask(exc.message), extra={"event": "settings.invalid"})
        return exc.exit_code
    try:
        if args.command == "restore":
            return restore_command(
                settings,
                args.artifact,
                args.target_db,
                args.jobs,
                args.no_owner,
                force=args.force,
                allow_other_source=args.allow_other_source,
                with_globals=args.with_globals,
            )
        if args.command == "verify":
            return verify_command(settings, args.artifact, force=args.force)
        return run(settings)
    except errors.RunnerError as exc:
        log.error(
            mask(exc.message), extra={"event": f"{args.command}.failed", "reason": exc.reason}
        )
        return exc.exit_code


def _config_failure(exc: errors.RunnerError) -> None:
    """Settings did not parse: still tell Kubernetes, and storage too if it is usable."""
    report = Report(datetime.now(UTC), "", "", "", "", "")
    report.fail(exc)
    report.finish()
    path = os.environ.get("BACKUP_TERMINATION_LOG") or "/dev/termination-log"
    with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as f:
        f.write(termination_message(report.summary()))
    root = os.environ.get("BACKUP_STORAGE_ROOT", "").strip()
    prefix = os.environ.get("BACKUP_PREFIX", "").strip() or "backup"
    if not root or not re.fullmatch(PREFIX_PATTERN, prefix):
        return
    storage = Storage(Path(root), prefix)
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
