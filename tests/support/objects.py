"""Helpers for object-storage backups: the three real servers, age identities, table checks."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from tests.harness import tiers
from tests.harness.objectservers import ObjectServer, ServerUnavailable, install, running
from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import DumpWorld, pgpass_line

KINDS = ("s3", "gcs", "azureBlob")


def serve(kind: str) -> Iterator[ObjectServer]:
    """One real object-storage server of `kind` for as long as the generator runs."""
    try:
        with running(kind, install(kind)) as server:
            yield server
    except ServerUnavailable as exc:
        tiers.unavailable("postgres", str(exc))


@dataclass(frozen=True)
class AgeKey:
    identity: Path
    recipient: str
    secret_line: str


def make_age_key(directory: Path) -> AgeKey:
    keygen = shutil.which("age-keygen")
    if keygen is None:
        tiers.unavailable("postgres", "age-keygen not found (apt-get install age)")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"identity-{secrets.token_hex(3)}.txt"
    subprocess.run([keygen, "-o", str(path)], check=True, capture_output=True)
    text = path.read_text()
    recipient = next(
        line.split(":", 1)[1].strip() for line in text.splitlines() if "public key" in line
    )
    secret_line = next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    return AgeKey(path, recipient, secret_line)


def table_fingerprints(pg_cluster: PgCluster, conn: Conn) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row's text, per user table (order-independent)."""
    out: dict[str, tuple[int, str]] = {}
    with pg_cluster.connect(conn) as c:
        tables = c.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for (name,) in tables:
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
                " FROM {} t"
            ).format(sql.SQL(str(name)))
            row = c.execute(query).fetchone()
            assert row is not None
            out[str(name)] = (int(str(row[0])), str(row[1]))
    return out


def add_noise(pg_cluster: PgCluster, conn: Conn, megabytes: int) -> None:
    """A table of hard-to-compress text, so the dump needs several multipart parts."""
    rows = megabytes * 1024 * 1024 // 2048
    with pg_cluster.connect(pg_cluster.admin.with_db(conn.dbname)) as c:
        c.execute("CREATE TABLE noise (id int PRIMARY KEY, junk text)")
        c.execute(
            "INSERT INTO noise SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')"
            " FROM generate_series(1, 64) i) FROM generate_series(1, %s) g",
            (rows,),
        )


def object_env(world: DumpWorld, server: ObjectServer, bucket: str, **extra: str) -> dict[str, str]:
    env = world.env(BACKUP_STORAGE_ROOT="", **server.runner_env(bucket))
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def elsewhere_env(
    env: dict[str, str],
    scratch: PgCluster,
    tmp: Path,
    identity: Path | None,
    login: Conn | None = None,
) -> dict[str, str]:
    """A restore's or drill's connection to another cluster: `login` (default its superuser)
    through a pgpass file, the backup's recipients dropped, the age identity (if any) as a file."""
    admin = login or scratch.admin
    pgpass = tmp / "target-pgpass"
    pgpass.write_text(pgpass_line(Conn("*", admin.port, admin.user, admin.password, "*")))
    pgpass.chmod(0o600)
    out = {**env, "PGHOST": admin.host, "PGPORT": str(admin.port), "PGUSER": admin.user}
    out["PGPASSFILE"] = str(pgpass)
    out.pop("BACKUP_AGE_RECIPIENTS", None)
    if identity is not None:
        out["BACKUP_AGE_IDENTITY_FILE"] = str(identity)
    return out
