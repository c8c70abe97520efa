"""Helpers for the dump tests: a canary role, a runner launcher and a /proc sampler."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from psycopg import sql

from tests.harness import tiers
from tests.harness.postgres import Conn, PgCluster, major_bindir
from tests.harness.wait import wait_for

DUMP_SRC = Path(__file__).resolve().parents[2] / "images" / "dump"


def canary_password() -> str:
    """Unique and awkward: ':' and '\\' test pgpass escaping, '@' and '/' URL encoding."""
    return f"Canary:{secrets.token_hex(8)}@x/y\\z"


def secret_forms(password: str) -> list[str]:
    """Every spelling of the password a leak could take (raw, percent-encoded, pgpass- and
    JSON-escaped)."""
    pgpass = password.replace("\\", "\\\\").replace(":", "\\:")
    forms = {password, quote(password, safe=""), password.replace(":", "\\:"), pgpass}
    for form in (password, pgpass):
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
    return sorted(forms)


REAL_BIN = Path("/usr/lib/postgresql/15/bin")


def fake_clients(base: Path, **scripts: str) -> str:
    """A client bin dir of the real tools, with some replaced by shell scripts; returns the
    BACKUP_PG_CLIENT_DIRS glob. `$REAL` in a script is the real bin dir."""
    bindir = base / "clients" / "15" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("psql", "pg_dump", "pg_restore"):
        path = bindir / tool
        if tool in scripts:
            path.write_text(f"#!/bin/sh\nREAL={REAL_BIN}\n{scripts[tool]}\n")
            path.chmod(0o755)
        else:
            path.symlink_to(REAL_BIN / tool)
    return str(base / "clients" / "*" / "bin")


def pgpass_line(conn: Conn, dbname: str | None = None) -> str:
    """libpq's escaping (the harness's Conn.pgpass_line does not escape ':' or '\\')."""
    fields = [conn.host, str(conn.port), dbname or conn.dbname, conn.user, conn.password]
    return ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields) + "\n"


def url_of(conn: Conn) -> str:
    user, pw = quote(conn.user, safe=""), quote(conn.password, safe="")
    return f"postgresql://{user}:{pw}@{conn.host}:{conn.port}/{conn.dbname}"


@dataclass
class DumpWorld:
    """One test's storage, tmp dir, termination log and credentials."""

    base: Path
    conn: Conn
    storage: Path = field(init=False)
    tmp: Path = field(init=False)
    termlog: Path = field(init=False)

    def __post_init__(self) -> None:
        self.storage = self.base / "storage"
        self.tmp = self.base / "tmp"
        self.termlog = self.base / "termination-log"
        for d in (self.storage, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.pgpass = self.base / "pgpass"
        self.pgpass.write_text(pgpass_line(self.conn))
        self.pgpass.chmod(0o600)

    def env(self, **overrides: str) -> dict[str, str]:
        """A pod-like environment: libpq variables + PGPASSFILE, nothing inherited."""
        env = {
            "PATH": os.environ["PATH"],
            "PGHOST": self.conn.host,
            "PGPORT": str(self.conn.port),
            "PGDATABASE": self.conn.dbname,
            "PGUSER": self.conn.user,
            "PGPASSFILE": str(self.pgpass),
            "BACKUP_STORAGE_ROOT": str(self.storage),
            "BACKUP_PREFIX": "t",
            "BACKUP_TERMINATION_LOG": str(self.termlog),
            "BACKUP_TIMEOUT_SECONDS": "60",
            "BACKUP_KILL_GRACE_SECONDS": "2",
            "TMPDIR": str(self.tmp),
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v != ""}

    def secrets(self) -> list[str]:
        return secret_forms(self.conn.password)


def runner_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "learnops_dump", *args]


def start_runner(env: Mapping[str, str], *args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        runner_argv(*(args or ("run",))),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def run_runner(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        runner_argv(*(args or ("run",))),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ProcSampler:
    """Reads every process's cmdline and environ in a loop; records any secret seen."""

    def __init__(self, needles: list[str], ignore_pids: frozenset[int] = frozenset()) -> None:
        self.needles = [n.encode() for n in needles]
        self.ignore = {str(p) for p in ignore_pids}
        # A child between fork and exec still shows its parent's memory, environ included: for
        # an ignored process (whose environ the pod spec filled) that copy is the same process.
        self.ignore_cmdlines: set[bytes] = set()
        for pid in self.ignore:
            with contextlib.suppress(OSError):
                self.ignore_cmdlines.add(Path(f"/proc/{pid}/cmdline").read_bytes())
        self.hits: list[str] = []
        self.seen: set[str] = set()
        """Program names observed: proves the sampler really saw the children."""
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == me or pid in self.ignore:
                    continue
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/cmdline").read_bytes() in self.ignore_cmdlines:
                        continue
                for what in ("cmdline", "environ"):
                    with contextlib.suppress(OSError):
                        data = Path(f"/proc/{pid}/{what}").read_bytes()
                        if any(n in data for n in self.needles):
                            self.hits.append(f"{pid}/{what}")
                        if what == "cmdline" and data:
                            self.seen.add(os.path.basename(data.split(b"\0", 1)[0]).decode())
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def files_containing(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(str(path))
    return found


def create_dump_role(
    pg_cluster: PgCluster, dbname: str, *, createdb: bool = True, read_all_data: bool = True
) -> Conn:
    """A non-superuser role with a unique canary password that may read everything
    (pg_read_all_data; without it, or before 14: SELECT on the public schema's tables)."""
    name = f"dumper_{secrets.token_hex(4)}"
    conn = pg_cluster.create_user(name, canary_password())
    role = sql.Identifier(name)
    with pg_cluster.connect() as c:
        if pg_cluster.major >= 14 and read_all_data:
            c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(role))
        if createdb:
            c.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(role))
    if pg_cluster.major < 14 or not read_all_data:  # grant what the sample schema has
        with pg_cluster.connect(pg_cluster.admin.with_db(dbname)) as c:
            for what in ("TABLES", "SEQUENCES"):
                c.execute(
                    sql.SQL("GRANT SELECT ON ALL {} IN SCHEMA public TO {}").format(
                        sql.SQL(what), role
                    )
                )
    return conn.with_db(dbname)


@contextlib.contextmanager
def locked(pg_cluster: PgCluster, dbname: str) -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on a table so pg_dump blocks (a slow database)."""
    with pg_cluster.connect(pg_cluster.admin.with_db(dbname)) as c:
        c.execute("BEGIN")
        c.execute("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE")
        yield
        c.execute("ROLLBACK")


def children_of(pid: int) -> list[str]:
    names = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                names.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
    return names


def wait_for_child(pid: int, name: str, timeout: float = 20) -> None:
    wait_for(lambda: name in children_of(pid), timeout, f"{name} to start under {pid}", every=0.02)
    time.sleep(0.3)  # let it connect and block on the lock


def client_dirs(base: Path, majors: Iterable[int]) -> str:
    """BACKUP_PG_CLIENT_DIRS for the registry builds of `majors`, laid out like the image's
    /usr/lib/postgresql/<major>/bin (the same 14-18 builds the image bundles in CI)."""
    root = base / "clients"
    root.mkdir(exist_ok=True)
    for major in majors:
        bindir = major_bindir(major)
        if bindir is None:
            tiers.unavailable("postgres", f"no PostgreSQL {major} client build (make deps)")
        link = root / str(major)
        if not link.exists():
            link.symlink_to(bindir.parent, target_is_directory=True)
    return str(root / "*" / "bin")


def table_checksums(pg_cluster: PgCluster, dbname: str) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row in a stable order) of each user table."""
    result: dict[str, tuple[int, str]] = {}
    with pg_cluster.connect(pg_cluster.admin.with_db(dbname)) as c:
        tables = c.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
                "FROM {} t"
            ).format(sql.SQL(str(table)))
            row = c.execute(query).fetchone()
            assert row is not None
            count, digest = row
            assert isinstance(count, int)
            result[str(table)] = (count, str(digest))
    return result
