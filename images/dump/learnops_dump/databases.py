"""Which databases one run backs up, and the file-name label each one's artifact gets."""

from __future__ import annotations

import hashlib
import re

from .artifacts import GLOBALS_LABEL
from .errors import DumpFailed
from .procs import Supervisor
from .queries import query
from .settings import Settings
from .versions import Client

# Database names are arbitrary (any character, up to 63 bytes); file names are not.
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,63}")


def label(dbname: str) -> str:
    """The database's part of an artifact name: the name itself when it is file-name safe,
    else its safe characters plus a hash of the name (so two names never share a label)."""
    if _SAFE.fullmatch(dbname) and dbname != GLOBALS_LABEL:  # the globals' own label
        return dbname
    kept = re.sub(r"[^A-Za-z0-9_-]+", "_", dbname).strip("_")[:40] or "db"
    return f"{kept}-{hashlib.sha256(dbname.encode()).hexdigest()[:10]}"


def selected(
    settings: Settings, sup: Supervisor, client: Client, env: dict[str, str]
) -> list[str] | None:
    """The databases of this run; None means the classic single database (PGDATABASE)."""
    if settings.databases:
        return list(settings.databases)
    if not settings.all_databases:
        return None
    psql = [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-0", "-v", "ON_ERROR_STOP=1"]
    rc, out, err = sup.run(
        [*psql, "-f", "-"],
        env,
        stdin=query("connectable_databases").encode(),
    )
    if rc != 0:
        raise DumpFailed(f"cannot list the databases: {err or f'psql exited {rc}'}")
    names = [n.strip("\n") for n in out.split("\0")]
    names = [n for n in names if n]
    if not names:
        raise DumpFailed("allDatabases: the server has no connectable non-template database")
    return names
