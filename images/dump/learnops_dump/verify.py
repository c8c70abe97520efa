"""Prove an artifact restores: `pg_restore --list` always, a scratch restore on request."""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
from pathlib import Path

from .artifacts import Artifact, check_integrity, opened
from .errors import VerificationFailed
from .procs import Supervisor, tail
from .queries import query
from .restore import psql_script, restore_into
from .settings import DumpFormat
from .versions import Client

log = logging.getLogger(__name__)
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"
TAIL_BYTES = 4096


def verify_list(sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]) -> int:
    """The archive's TOC reads back (custom/directory) or the SQL ends properly (plain).

    Returns the number of TOC entries (plain: 0).
    """
    check_integrity(sup, artifact, env)
    if artifact.format is DumpFormat.PLAIN:
        _check_plain_trailer(sup, artifact, env)
        return 0
    # pg_restore reads a plain archive itself; an outer-compressed one arrives on stdin.
    feed = opened(sup, artifact, env) if artifact.outer else contextlib.nullcontext(None)
    with feed as stream:
        target = [str(artifact.path)] if artifact.outer is None else []
        proc = sup.spawn(
            [client.tool("pg_restore"), "--list", *target],
            env,
            stdin=stream or subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        entries, last = 0, b""
        for line in proc.stdout:
            last = line
            entries += bool(line.strip()) and not line.startswith(b";")
        rc = sup.wait(proc)
    sup.check()
    if rc != 0 or entries == 0:
        raise VerificationFailed(
            f"{artifact.path.name}: pg_restore --list exited with {rc}: {tail(last)}"
        )
    return entries


def _check_plain_trailer(sup: Supervisor, artifact: Artifact, env: dict[str, str]) -> None:
    end = b""
    with opened(sup, artifact, env) as stream:
        while block := stream.read(1 << 20):
            end = (end + block)[-TAIL_BYTES:]
    sup.check()
    if PLAIN_TRAILER not in end:
        raise VerificationFailed(f"{artifact.path.name}: the SQL script is incomplete")


def row_counts(sup: Supervisor, client: Client, env: dict[str, str]) -> dict[str, int]:
    out = psql_script(sup, client, env, query("table_row_counts"), on_error_stop=True)
    counts: dict[str, int] = {}
    for line in out.splitlines():
        name, _, count = line.rpartition("|")
        if name:
            counts[name] = int(count)
    return counts


def verify_restore(sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]) -> int:
    """Restore into a scratch database and compare every table's row count.

    Counts are taken from the source after the dump, so concurrent writes to the
    source make this check fail (documented: use it on quiet databases).
    Returns the number of tables compared.
    """
    scratch = f"learnops_verify_{secrets.token_hex(6)}"
    variables = {"scratch": scratch}
    try:
        psql_script(sup, client, env, query("create_scratch_database"), variables=variables)
    except VerificationFailed as exc:
        raise VerificationFailed(f"cannot create the scratch database: {exc.message}") from None
    try:
        scratch_env = {**env, "PGDATABASE": scratch}
        restore_into(sup, client, artifact, scratch_env, scratch=True)
        expected = row_counts(sup, client, env)
        actual = row_counts(sup, client, scratch_env)
    finally:
        # also after a timeout or SIGTERM: a scratch database must not outlive the run
        argv = [client.tool("psql"), "-X", "-q", "-w", "-v", f"scratch={scratch}", "-f", "-"]
        sup.run_cleanup(argv, env, query("drop_scratch_database").encode())
    if expected != actual:
        diff = sorted(
            f"{t}: source {expected.get(t)} restored {actual.get(t)}"
            for t in expected.keys() | actual.keys()
            if expected.get(t) != actual.get(t)
        )
        raise VerificationFailed("row counts differ after restore: " + "; ".join(diff[:5]))
    log.info(
        "restore verification passed",
        extra={"event": "verify.restore", "tables": len(expected)},
    )
    return len(expected)


def artifact_path(root: Path | None, name: str) -> Path:
    """ARTIFACT as given, or relative to the storage root."""
    path = Path(name)
    if not path.is_absolute() and root is not None and not path.exists():
        path = root / name
    return path
