"""A private, throwaway PostgreSQL cluster built from Debian's packages.

The cluster uses scram-sha-256 for every connection (local socket and TCP), so
tests exercise the real credential paths rather than `trust`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .net import free_port

SUPERUSER = "postgres"
TEMPLATE_DB = "learnops_template"
SAMPLE_SQL = Path(__file__).with_name("sample_data.sql")
# pgbench scale 1 is ~15 MB on disk (100,000 accounts rows plus indexes).
MB_PER_PGBENCH_SCALE = 15


def pg_bindir() -> Path | None:
    """Newest installed server binaries (PG_BINDIR overrides)."""
    if env := os.environ.get("PG_BINDIR"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_of)
    return Path(found[-1]).parent if found else None


def _major_of(path: str) -> int:
    return int(Path(path).parts[-3])


@dataclass(frozen=True)
class Conn:
    """Where and as whom to connect; the password never goes into argv."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def kwargs(self) -> dict[str, str | int]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }

    def url(self) -> str:
        """A postgresql:// URL, for settings that take one (never for argv)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    def pgpass_line(self) -> str:
        return f"{self.host}:{self.port}:{self.dbname}:{self.user}:{self.password}\n"

    def with_db(self, dbname: str) -> Conn:
        return Conn(self.host, self.port, self.user, self.password, dbname)


class PgServer:
    """Administration of a running server as its superuser (creating roles and databases)."""

    host: str
    port: int
    superuser_password: str
    bindir: Path  # client tools (pgbench) on this host

    @property
    def admin(self) -> Conn:
        return Conn(self.host, self.port, SUPERUSER, self.superuser_password, "postgres")

    @contextlib.contextmanager
    def connect(self, conn: Conn | None = None) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with psycopg.connect(**(conn or self.admin).kwargs(), autocommit=True) as c:  # type: ignore[arg-type]
            yield c

    def create_user(self, name: str, password: str, *, superuser: bool = False) -> Conn:
        """A login role with a scram password; returns how to connect as it."""
        role = sql.SQL("SUPERUSER") if superuser else sql.SQL("NOSUPERUSER")
        with self.connect() as c:
            c.execute(
                sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                    sql.Identifier(name), role, sql.Literal(password)
                )
            )
        return Conn(self.host, self.port, name, password, "postgres")

    def create_database(
        self, name: str, *, owner: str = SUPERUSER, template: str = TEMPLATE_DB
    ) -> Conn:
        with self.connect() as c:
            c.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(owner), sql.Identifier(template)
                )
            )
        return self.admin.with_db(name)

    def drop_database(self, name: str) -> None:
        with self.connect() as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def database_size(self, dbname: str) -> int:
        with self.connect() as c:
            row = c.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()
        assert row is not None
        size = row[0]
        assert isinstance(size, int)
        return size

    def create_template(self) -> None:
        """The sample-data template every test database is cloned from."""
        with self.connect() as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        with self.connect(self.admin.with_db(TEMPLATE_DB)) as c:
            c.execute(SAMPLE_SQL.read_bytes())

    # -- bulk data -------------------------------------------------------
    def fill_mb(self, dbname: str, megabytes: int) -> None:
        """Add about `megabytes` MB of pgbench tables (realistic, indexed rows)."""
        scale = max(1, -(-megabytes // MB_PER_PGBENCH_SCALE))
        self.pgbench_init(dbname, scale)

    def pgbench_init(self, dbname: str, scale: int) -> None:
        with tempfile.NamedTemporaryFile("w", prefix="pgpass-", delete=False) as f:
            f.write(self.admin.with_db(dbname).pgpass_line())
        try:
            os.chmod(f.name, 0o600)
            env = {**_clean_env(), "PGPASSFILE": f.name}
            subprocess.run(
                [
                    str(self.bindir / "pgbench"),
                    "-i",
                    "-q",
                    "-s",
                    str(scale),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    SUPERUSER,
                    dbname,
                ],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        finally:
            os.unlink(f.name)


class PgCluster(PgServer):
    """initdb + pg_ctl on a free port with its own socket directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.major = int(bindir.parts[-2])
        self.base = Path(tempfile.mkdtemp(prefix="learnops-pg-"))
        self.data = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.superuser_password = secrets.token_urlsafe(18)
        self._run_as = "postgres" if os.geteuid() == 0 else None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> PgCluster:
        self.sockdir.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(self.superuser_password + "\n")
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            for p in (self.base, self.sockdir, pwfile):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base, 0o700)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()
        opts = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses={self.host} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=128MB"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w", "start")
        self.create_template()
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            user=self._run_as,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.base,
        )


def _clean_env() -> dict[str, str]:
    """The environment without any libpq variable a developer may have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}
