"""Server major first, then the pg_dump of that major, else the closest newer one."""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ConnectionFailed, VersionMismatch
from .procs import Supervisor
from .queries import query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Client:
    """One installed set of PostgreSQL client tools."""

    major: int
    bindir: Path

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


@dataclass(frozen=True)
class ServerVersion:
    major: int
    text: str
    """server_version as the server reports it, e.g. "15.18 (Debian 15.18-0+deb12u1)"."""


def installed_clients(globs: str) -> list[Client]:
    """Every `<major>/bin` directory with a pg_dump, oldest first."""
    found: dict[int, Client] = {}
    for pattern in filter(None, globs.split(":")):
        for dump in glob.glob(str(Path(pattern) / "pg_dump")):
            bindir = Path(dump).parent
            match = re.fullmatch(r"\d+", bindir.parent.name)
            if match:
                found.setdefault(int(bindir.parent.name), Client(int(bindir.parent.name), bindir))
    return [found[m] for m in sorted(found)]


def choose_client(clients: list[Client], server_major: int, *, at_least: int = 0) -> Client:
    """The client of the server's own major, else the oldest newer one.

    pg_dump refuses servers newer than itself, and a newer client writes what only newer
    servers accept (pg_dump/pg_restore 17+ emit `SET transaction_timeout`, which a 13-16
    server rejects), so the closest client keeps a backup restorable into its own major.
    `at_least`: a restore needs a pg_restore no older than the pg_dump that wrote the archive.
    """
    if not clients:
        raise ConfigError("no pg_dump found (BACKUP_PG_CLIENT_DIRS)")
    for client in clients:  # oldest first
        if client.major >= max(server_major, at_least):
            return client
    newest = clients[-1]
    installed = ", ".join(str(c.major) for c in clients)
    if newest.major < server_major:
        raise VersionMismatch(
            f"server major {server_major} is newer than every installed pg_dump "
            f"(newest {newest.major}; installed: {installed})"
        )
    raise VersionMismatch(
        f"the artifact was written by pg_dump {at_least}; no installed client is that new "
        f"(installed: {installed})"
    )


def client_version(sup: Supervisor, client: Client, env: dict[str, str]) -> str:
    """pg_dump's own version, e.g. "15.18"."""
    rc, out, _ = sup.run([client.tool("pg_dump"), "--version"], env)
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if rc == 0 and match else str(client.major)


def probe_server(sup: Supervisor, psql: str, env: dict[str, str]) -> ServerVersion:
    """Connect once with the private pgpass and read the server version.

    Any failure here is a connection/authentication failure (exit 3): a wrong
    password, an unknown database, an unreachable host.
    """
    rc, out, err = sup.run(
        [psql, "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        env,
        stdin=query("server_version").encode(),
    )
    if rc != 0:
        raise ConnectionFailed(f"cannot connect: {err or f'psql exited {rc}'}")
    number, _, text = out.strip().partition("|")
    if not number.isdigit():
        raise ConnectionFailed("cannot read the server version")
    num = int(number)
    major = num // 10000 if num >= 100000 else num // 100
    return ServerVersion(major=major, text=text.strip())


def system_identifier(sup: Supervisor, psql: str, env: dict[str, str]) -> str | None:
    """The server's system identifier, or None if this role may not read it."""
    rc, out, _ = sup.run(
        [psql, "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        env,
        stdin=query("system_identifier").encode(),
    )
    text = out.strip()
    return text if rc == 0 and text.isdigit() else None
