"""Roles, memberships and tablespaces: `pg_dumpall --globals-only` as its own artifact.

Password hashes stay out unless asked for (`--no-role-passwords`, which also lets a role that
is not a superuser dump the globals: pg_dumpall then reads pg_roles instead of pg_authid).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .errors import DumpFailed, VerificationFailed
from .masking import mask
from .pipeline import Outcome, Plan, stream_dump
from .procs import Supervisor
from .queries import query
from .settings import DumpFormat
from .storage import Storage
from .versions import Client

GLOBALS_SUFFIX = ".globals.sql"
GLOBALS_MANIFEST_SUFFIX = ".globals.manifest.json"
TRAILER = b"-- PostgreSQL database cluster dump complete"
TAIL_BYTES = 4096


def dump_globals(
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    storage: Storage,
    name: str,
    tmpdir: Path,
    *,
    role_passwords: bool,
) -> dict[str, Any]:
    """Write and check `name` (its temp name; the run publishes it); returns its manifest
    entry (never any password)."""
    if role_passwords:
        _require_password_access(sup, client, env)
    args = ["--globals-only", "-w", "-l", env.get("PGDATABASE", "postgres")]
    if not role_passwords:
        args.append("--no-role-passwords")
    plan = Plan(DumpFormat.PLAIN, tuple(args), None, GLOBALS_SUFFIX)
    outcome = Outcome()
    stream_dump(sup, client.tool("pg_dumpall"), plan, env, storage, name, tmpdir, outcome)
    check_trailer(storage.temp_path(name))
    sup.check()
    return {
        "status": "ok",
        "artifact": name,
        "sizeBytes": outcome.size,
        "sha256": outcome.sha256,
        "rolePasswords": role_passwords,
        "stages": [{"name": s.name, "exitCode": s.exit_code} for s in outcome.stages],
    }


def _require_password_access(sup: Supervisor, client: Client, env: dict[str, str]) -> None:
    rc, out, err = sup.run(
        [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        env,
        stdin=query("can_read_role_passwords").encode(),
    )
    if rc != 0:
        raise DumpFailed(f"globals: cannot check the backup role's privileges: {err}")
    if out.strip() != "t":
        raise DumpFailed(
            "globals: includeRolePasswords needs a backup role that may read pg_authid "
            "(a superuser); this role may not. Leave the passwords out or use a superuser."
        )


def check_trailer(path: Path) -> None:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - TAIL_BYTES))
        end = f.read()
    if TRAILER not in end:
        name = path.name.removeprefix(".tmp-")
        raise VerificationFailed(f"{name}: the globals script is incomplete")


def apply_globals(sup: Supervisor, client: Client, path: Path, env: dict[str, str]) -> int:
    """Run the globals script; roles that already exist are skipped, any other error fails.

    Returns how many statements were skipped because their object already existed (the
    restoring role itself, `postgres`, roles of an earlier restore).
    """
    argv = [client.tool("psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=0", "-f", str(path)]
    skipped, fatal = 0, list[str]()
    # stderr goes to a file and is read whole: a tail could hide a real error among many skips
    with tempfile.TemporaryFile(dir=env.get("TMPDIR")) as err:
        proc = sup.spawn(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        rc = sup.wait(proc)
        sup.check()
        err.seek(0)
        for raw in err:
            line = mask(raw.decode("utf-8", "replace")).strip()
            if "ERROR:" not in line:
                continue
            if "already exists" in line:
                skipped += 1
            elif len(fatal) < 3:
                fatal.append(line)
    if rc != 0 or fatal:
        raise VerificationFailed(
            f"applying {path.name} failed: " + ("; ".join(fatal) or f"psql exited {rc}")
        )
    return skipped
