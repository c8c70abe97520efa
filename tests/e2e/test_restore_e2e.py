"""Restores and restore drills with pods that really run the dump image: a real backup of sample
data is restored through a DatabaseRestore into a second PostgreSQL and compared table by table;
a non-empty target is refused; a scheduled drill proves the backup restorable, and a corrupted
artifact makes it fail, sets Restorable=False, and the shipped alert rule selects it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.fixtures_operator import Namespace, OperatorProcess, backup, wait_for
from tests.fixtures_ship import render
from tests.harness import promtool
from tests.harness.containers import Engine
from tests.harness.dumpimage import build_dump_image
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import Conn, PgCluster

REPO = Path(__file__).resolve().parents[2]
DUMP_IMAGE = "learnops/dump:e2e"
TABLES = ("courses", "tasks", "submissions")


@pytest.fixture(scope="module")
def dump_image(container_engine: Engine) -> str:
    return build_dump_image(container_engine, DUMP_IMAGE)


def _fingerprint(cluster: PgCluster, conn: Conn) -> dict[str, tuple[int, str]]:
    """Every table's row count and an md5 over its rows in a stable order."""
    out: dict[str, tuple[int, str]] = {}
    with cluster.connect(conn) as c:
        for table in TABLES:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                "FROM {} t"
            ).format(sql.Identifier(table))
            row = c.execute(query).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))  # type: ignore[call-overload]
    return out


def _role(
    cluster: PgCluster, prefix: str, *, createdb: bool = True, read_all: bool = False
) -> Conn:
    password = f"canary-{secrets.token_hex(8)}"
    conn = cluster.create_user(f"{prefix}_{secrets.token_hex(4)}", password)
    with cluster.connect() as c:
        if createdb:
            c.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(conn.user)))
        if read_all:
            c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(conn.user)))
    return conn


def _pgpass_secret(ns: Namespace, name: str, conn: Conn, dbname: str = "*") -> None:
    line = f"{conn.host}:{conn.port}:{dbname}:{conn.user}:{conn.password}\n"
    ns.kubectl("create", "secret", "generic", name, "--from-file=pgpass=/dev/stdin", input=line)


def _url_secret(ns: Namespace, name: str, conn: Conn) -> None:
    url = f"postgresql://{conn.user}:{conn.password}@{conn.host}:{conn.port}/postgres"
    ns.kubectl(
        "create", "secret", "generic", name, "--from-file=DATABASE_URL=/dev/stdin", input=url
    )


def _declare_backup(ns: Namespace, source: Conn, **spec: Any) -> None:
    _pgpass_secret(ns, "source-pgpass", source, source.dbname)
    ns.apply(
        backup(
            "nightly",
            database={
                "host": source.host,
                "port": source.port,
                "dbname": source.dbname,
                "user": source.user,
                "sslMode": "disable",
                "pgpassSecretRef": {"name": "source-pgpass"},
            },
            image=DUMP_IMAGE,
            imagePullPolicy="Never",
            backoffLimit=0,
            **spec,
        )
    )
    wait_for(lambda: ns.condition("nightly", "Ready").get("status") == "True", 30, "Ready")


def _backup_now(ns: Namespace, token: str) -> dict[str, Any]:
    ns.kubectl("annotate", "dbb", "nightly", "--overwrite", f"learnops.io/backup-now={token}")
    st: dict[str, Any] = wait_for(
        lambda: (s := (ns.get("dbb", "nightly") or {}).get("status") or {}).get("lastResult") and s,
        180,
        "the backup's result",
    )
    assert st["lastResult"] == "Succeeded", st
    return st


def _restore(ns: Namespace, name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    ns.apply(
        {
            "apiVersion": "learnops.io/v1alpha1",
            "kind": "DatabaseRestore",
            "metadata": {"name": name},
            "spec": {
                "source": {"backupRef": {"name": "nightly"}},
                "target": target,
                "image": DUMP_IMAGE,
                "imagePullPolicy": "Never",
                **spec,
            },
        }
    )
    st: dict[str, Any] = wait_for(
        lambda: (
            (s := ((ns.get("dbr", name) or {}).get("status") or {})).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        180,
        f"DatabaseRestore {name} to finish",
    )
    return st


def test_a_real_backup_restores_into_a_new_database_on_a_second_postgresql_table_for_table(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    pg_db: Conn,
    scratch_cluster: PgCluster,
) -> None:
    source = _role(pg_cluster, "backup", createdb=False, read_all=True).with_db(pg_db.dbname)
    _declare_backup(backup_ns, source)
    done = _backup_now(backup_ns, "e2e-restore")
    restorer = _role(scratch_cluster, "restorer")
    _url_secret(backup_ns, "restore-url", restorer)
    target = {
        "urlSecretRef": {"name": "restore-url"},
        "sslMode": "disable",
        "dbname": "learnops_restored",
        "policy": "create",
    }
    st = _restore(backup_ns, "copy", target, options={"noOwner": True})
    assert st["phase"] == "Succeeded", st
    assert st["artifact"] == done["lastSuccessfulBackup"]["artifact"]
    assert st["sha256"] == done["lastSuccessfulBackup"]["sha256"]
    assert st["rowCounts"]["tablesChecked"] == len(TABLES)
    assert st["rowCounts"]["mismatches"] == []
    assert st["durationSeconds"] > 0
    restored = scratch_cluster.admin.with_db("learnops_restored")
    assert _fingerprint(scratch_cluster, restored) == _fingerprint(pg_cluster, pg_db)
    assert [e["type"] for e in backup_ns.events("RestoreSucceeded")] == ["Normal"]
    written = backup_ns.kubectl("get", "dbb,dbr,jobs,events", "-o", "json")
    pods = backup_ns.kubectl("get", "pods", "-o", "json")
    for canary in (restorer.password, source.password):
        assert canary not in written
        assert canary not in pods
        assert canary not in operator.logs()
    scratch_cluster.drop_database("learnops_restored")


def test_a_restore_into_a_non_empty_database_is_refused_and_leaves_it_untouched(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    pg_db: Conn,
    scratch_cluster: PgCluster,
) -> None:
    source = _role(pg_cluster, "backup", createdb=False, read_all=True).with_db(pg_db.dbname)
    _declare_backup(backup_ns, source)
    _backup_now(backup_ns, "e2e-refuse")
    busy = f"busy_{secrets.token_hex(3)}"
    scratch_cluster.create_database(busy)  # holds the sample tables already
    before = _fingerprint(scratch_cluster, scratch_cluster.admin.with_db(busy))
    _pgpass_secret(backup_ns, "restore-pgpass", scratch_cluster.admin)
    target = {
        "host": scratch_cluster.host,
        "port": scratch_cluster.port,
        "user": scratch_cluster.admin.user,
        "sslMode": "disable",
        "pgpassSecretRef": {"name": "restore-pgpass"},
        "dbname": busy,
    }
    st = _restore(backup_ns, "into-busy", target)
    assert (st["phase"], st["reason"]) == ("Failed", "TargetNotEmpty"), st
    assert "policy ifEmpty restores only into an empty database" in st["message"]
    assert _fingerprint(scratch_cluster, scratch_cluster.admin.with_db(busy)) == before
    assert [e["type"] for e in backup_ns.events("RestoreFailed")] == ["Warning"]
    scratch_cluster.drop_database(busy)


def _drilled_backup(
    ns: Namespace, pg_cluster: PgCluster, pg_db: Conn, scratch_cluster: PgCluster
) -> dict[str, Any]:
    source = _role(pg_cluster, "backup", createdb=False, read_all=True).with_db(pg_db.dbname)
    drill_role = _role(scratch_cluster, "drill")
    _pgpass_secret(ns, "scratch-pgpass", drill_role)
    drill = {
        "schedule": "* * * * *",
        "server": {
            "host": drill_role.host,
            "port": drill_role.port,
            "user": drill_role.user,
            "sslMode": "disable",
            "pgpassSecretRef": {"name": "scratch-pgpass"},
        },
        "assertions": [{"name": "five courses", "sql": "SELECT count(*) = 5 FROM courses"}],
        "verificationWindowSeconds": 600,
        "timeoutSeconds": 120,
    }
    _declare_backup(ns, source, restoreDrill=drill)
    return _backup_now(ns, "e2e-drill")


def _restorable(ns: Namespace, value: str) -> dict[str, Any]:
    cond: dict[str, Any] = wait_for(
        lambda: (c := ns.condition("nightly", "Restorable")).get("status") == value and c,
        200,
        f"Restorable={value} from a scheduled drill",
    )
    return cond


def test_a_scheduled_drill_proves_the_backup_restorable(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    pg_db: Conn,
    scratch_cluster: PgCluster,
) -> None:
    done = _drilled_backup(backup_ns, pg_cluster, pg_db, scratch_cluster)
    cond = _restorable(backup_ns, "True")
    assert cond["reason"] == "DrillPassed"
    st = (backup_ns.get("dbb", "nightly") or {})["status"]
    verified = st["lastVerifiedRestore"]
    assert verified["artifact"] == done["lastSuccessfulBackup"]["artifact"]
    assert verified["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts", "assertion:five courses",
    ]  # fmt: skip
    assert st["artifacts"][0]["verifiedRestoreTime"] == verified["time"]
    jobs = backup_ns.items("jobs", "app.kubernetes.io/component=drill")
    assert jobs
    assert all(j["metadata"]["labels"]["learnops.io/trigger"] == "scheduled" for j in jobs)
    with scratch_cluster.connect() as c:
        left = c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'learnops_drill_%'")
        assert left.fetchall() == []


def test_a_corrupted_artifact_fails_the_drill_and_the_alert_rule_selects_it(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    pg_db: Conn,
    scratch_cluster: PgCluster,
    tmp_path: Path,
) -> None:
    if pod_runner is None:
        pytest.skip("corrupting the artifact needs the kubelet stand-in's PVC directory")
    done = _drilled_backup(backup_ns, pg_cluster, pg_db, scratch_cluster)
    artifact = (
        pod_runner.pvc_dir(backup_ns.name, "backups") / done["lastSuccessfulBackup"]["artifact"]
    )
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    cond = _restorable(backup_ns, "False")
    assert cond["reason"] == "VerificationError"
    assert "sha256 differs from its manifest" in cond["message"]
    failed = (backup_ns.get("dbb", "nightly") or {})["status"]["lastFailedDrill"]
    assert failed["artifact"] == artifact.name
    wait_for(
        lambda: (
            ("learnops_backup_restorable", "0.0")
            in [
                (s.split("{")[0], v)
                for s, v in promtool.samples(
                    operator.metrics(), "learnops_backup_restorable", namespace=backup_ns.name
                )
            ]
        ),
        30,
        "the restorable gauge at 0",
    )
    (rule,) = [d for d in render("full-monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    series = [
        (s, "60" if s.startswith("learnops_backup_unverified_since") else v)
        for s, v in promtool.samples(
            operator.metrics(), "learnops_backup_", namespace=backup_ns.name
        )
    ]
    labels = {"namespace": backup_ns.name, "name": "nightly", "severity": "warning"}
    proc = promtool.firing(
        tmp_path,
        rule,
        series,
        "30m",
        {"LearnopsBackupNotRestorable": [labels], "LearnopsBackupNotVerified": [labels]},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with scratch_cluster.connect() as c:
        left = c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'learnops_drill_%'")
        assert left.fetchall() == []
    assert (
        json.loads(
            artifact.with_name(artifact.name.split(".dump")[0] + ".manifest.json").read_text()
        )["status"]
        == "ok"
    )
