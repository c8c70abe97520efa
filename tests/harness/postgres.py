"""A private, throwaway PostgreSQL cluster of any supported major (13-18).

The default server is Debian's (`apt-get install postgresql`); any other major comes from the
registry builds that tests/harness/install-postgresql.sh unpacks (LEARNOPS_PG_MAJOR picks one for
the whole session). The cluster uses scram-sha-256 for every connection (local socket and TCP), so
tests exercise the real credential paths rather than `trust`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
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


# Every major the project supports, oldest first (docs/dump.md, "Supported majors").
SUPPORTED_MAJORS = (13, 14, 15, 16, 17, 18)


def pg_bindir() -> Path | None:
    """The session's server: PG_BINDIR, else LEARNOPS_PG_MAJOR's build, else Debian's newest."""
    if env := os.environ.get("PG_BINDIR"):
        return Path(env)
    if major := os.environ.get("LEARNOPS_PG_MAJOR", "").strip():
        return major_bindir(int(major))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_of)
    return Path(found[-1]).parent if found else None


def pg_trees() -> Path:
    """Where install-postgresql.sh unpacks the registry builds (same rule as the script)."""
    if env := os.environ.get("LEARNOPS_PG_TREES"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/opt/learnops/postgresql")
    cache = os.environ.get("LEARNOPS_CACHE") or str(Path.home() / ".cache" / "learnops")
    return Path(cache) / "postgresql" / "trees"


def major_bindir(major: int) -> Path | None:
    """The newest unpacked build of `major` (e.g. <trees>/18.6.0/bin), if installed."""
    found = [p for p in pg_trees().glob(f"{major}.*/bin/postgres") if _major_of(str(p)) == major]
    return max(found, key=lambda p: _version_key(p.parts[-3])).parent if found else None


def client_bundles() -> list[Path]:
    """The 14-18 client tarballs install-postgresql.sh cached (the dump image's CI source)."""
    cache = os.environ.get("LEARNOPS_CACHE") or str(Path.home() / ".cache" / "learnops")
    downloads = Path(cache) / "postgresql" / "downloads"
    return sorted(downloads.glob("postgresql-*-x86_64-unknown-linux-gnu.tar.gz"))


def bindir_major(bindir: Path) -> int:
    """The major of .../<major or version>/bin: /usr/lib/postgresql/15/bin or <trees>/18.6.0/bin."""
    return _version_key(bindir.parts[-2])[0]


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _major_of(path: str) -> int:
    """Major of .../<major or version>/bin/<tool>: "15" or "18.6.0" -> 15, 18."""
    return _version_key(Path(path).parts[-3])[0]


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
                    str(_pgbench(self.bindir)),
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
        self.major = bindir_major(bindir)
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
            "-c shared_buffers=128MB -c password_encryption=scram-sha-256"
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


def _pgbench(bindir: Path) -> Path:
    """This server's pgbench, else any other installed one (the 13 build ships none; pgbench
    -i of a newer major initialises an older server the same way)."""
    if (bindir / "pgbench").exists():
        return bindir / "pgbench"
    others = glob.glob("/usr/lib/postgresql/*/bin/pgbench") + glob.glob(
        str(pg_trees() / "*" / "bin" / "pgbench")
    )
    if not others:
        raise FileNotFoundError(f"no pgbench beside {bindir} or elsewhere")
    return Path(others[0])


def _clean_env() -> dict[str, str]:
    """The environment without any libpq variable a developer may have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}
