"""DatabaseBackups run once and DatabaseRestores on real pods (the e2e tier and the kind bench):
roles with canary passwords, pgpass Secrets, a restore declared and its finished status."""

from __future__ import annotations

import secrets
from typing import Any

from psycopg import sql

from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.operator import DUMP_IMAGE, Namespace


def role(
    server: PodPostgres, prefix: str, *, createdb: bool = True, read_all: bool = False
) -> Conn:
    """A login role with a canary password (host-side connection)."""
    conn = server.create_user(f"{prefix}_{secrets.token_hex(4)}", f"canary-{secrets.token_hex(8)}")
    with server.connect() as c:
        if createdb:
            c.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(conn.user)))
        if read_all:
            c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(conn.user)))
    return conn


def pgpass_secret(ns: Namespace, name: str, conn: Conn, dbname: str = "*") -> None:
    """A Secret with one pgpass line for `conn` (stdin, never argv)."""
    line = f"{conn.host}:{conn.port}:{dbname}:{conn.user}:{conn.password}\n"
    ns.kubectl("create", "secret", "generic", name, "--from-file=pgpass=/dev/stdin", input=line)


def server(conn: Conn, secret: str) -> dict[str, Any]:
    """A restore target or drill server that reads its password from a pgpass Secret."""
    return {
        "host": conn.host,
        "port": conn.port,
        "user": conn.user,
        "sslMode": "disable",
        "pgpassSecretRef": {"name": secret},
    }


def backed_up(
    ns: Namespace,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    token: str,
    *,
    name: str = "nightly",
    timeout: float = 180,
    **spec: Any,
) -> tuple[Conn, dict[str, Any]]:
    """A DatabaseBackup `name` of pg_db by a read-only role, run once; (role, status)."""
    source = pg_cluster.in_cluster(
        role(pg_cluster, "backup", createdb=False, read_all=True).with_db(pg_db.dbname)
    )
    ns.declare_backup(source, source.password, name, **spec)
    st = ns.run_now(name, token, timeout=timeout)
    assert st["lastResult"] == "Succeeded", st
    return source, st


def declare_restore(
    ns: Namespace, name: str, target: dict[str, Any], *, backup: str = "nightly", **spec: Any
) -> None:
    """A DatabaseRestore of DatabaseBackup `backup`'s latest artifact into `target`."""
    ns.apply(
        {
            "apiVersion": "learnops.io/v1alpha1",
            "kind": "DatabaseRestore",
            "metadata": {"name": name},
            "spec": {
                "source": {"backupRef": {"name": backup}},
                "target": target,
                "image": DUMP_IMAGE,
                "imagePullPolicy": "Never",
                **spec,
            },
        }
    )


def finished_restore(ns: Namespace, name: str) -> dict[str, Any] | None:
    """The restore's status once its phase is Succeeded or Failed, else None."""
    st: dict[str, Any] = (ns.get("dbr", name) or {}).get("status") or {}
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def restore(
    ns: Namespace, name: str, target: dict[str, Any], *, timeout: float = 180, **spec: Any
) -> dict[str, Any]:
    """Declare a restore of `nightly` and wait until it finished; its status."""
    declare_restore(ns, name, target, **spec)
    st: dict[str, Any] = wait_for(
        lambda: finished_restore(ns, name), timeout, f"DatabaseRestore {name} to finish"
    )
    return st
