"""The operator with pods that really run: the dump image backs up the test PostgreSQL and the
result travels pod → termination message → DatabaseBackup status, Events and metrics.

These are the status-flow assertions of tests/cluster/test_operator_runs.py, with the values the
real runner produced instead of a hand-written summary.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_operator import Namespace, OperatorProcess, backup, wait_for
from tests.harness.containers import Engine
from tests.harness.dumpimage import build_dump_image
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import Conn, PgCluster

REPO = Path(__file__).resolve().parents[2]
DUMP_IMAGE = "learnops/dump:e2e"


@pytest.fixture(scope="module")
def dump_image(container_engine: Engine) -> str:
    return build_dump_image(container_engine, DUMP_IMAGE)


@pytest.fixture
def canary_db(pg_cluster: PgCluster, pg_db: Conn) -> tuple[Conn, str]:
    """A backup role whose password is a unique canary, allowed to read pg_db."""
    canary = f"canary-{secrets.token_hex(8)}"
    role = f"backup_{secrets.token_hex(4)}"
    pg_cluster.create_user(role, canary)
    with pg_cluster.connect(pg_db) as c:
        c.execute(f'GRANT pg_read_all_data TO "{role}"')
    return Conn(pg_db.host, pg_db.port, role, canary, pg_db.dbname), canary


def _status(ns: Namespace, name: str) -> dict[str, Any]:
    return dict((ns.get("databasebackup", name) or {}).get("status") or {})


def _declare(ns: Namespace, conn: Conn, pgpass_password: str, name: str, **spec: Any) -> None:
    line = f"{conn.host}:{conn.port}:{conn.dbname}:{conn.user}:{pgpass_password}\n"
    ns.kubectl(
        "create", "secret", "generic", f"{name}-pgpass", "--from-file=pgpass=/dev/stdin", input=line
    )
    ns.apply(
        backup(
            name,
            database={
                "host": conn.host,
                "port": conn.port,
                "dbname": conn.dbname,
                "user": conn.user,
                "sslMode": "disable",
                "pgpassSecretRef": {"name": f"{name}-pgpass", "key": "pgpass"},
            },
            image=DUMP_IMAGE,
            imagePullPolicy="Never",
            backoffLimit=0,
            **spec,
        )
    )
    wait_for(lambda: ns.condition(name, "Ready").get("status") == "True", 30, "Ready=True")


def _run_now(ns: Namespace, name: str, token: str, timeout: float = 120) -> dict[str, Any]:
    """Trigger an on-demand run and wait until its result is on the resource."""
    ns.kubectl("annotate", "dbb", name, f"learnops.io/backup-now={token}")
    status: dict[str, Any] = wait_for(
        lambda: (s := _status(ns, name)).get("lastResult") and s, timeout, f"{name}'s result"
    )
    return status


def test_a_real_backup_pod_reports_success_on_the_resource(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    canary_db: tuple[Conn, str],
) -> None:
    conn, canary = canary_db
    _declare(backup_ns, conn, canary, "nightly")
    st = _run_now(backup_ns, "nightly", "e2e-1")
    assert st["lastResult"] == "Succeeded", st
    assert st["consecutiveFailures"] == 0
    success = st["lastSuccessfulBackup"]
    assert success["artifact"].startswith("nightly-")
    assert ".dump" in success["artifact"]  # custom format, maybe with a compressor suffix
    assert success["sizeBytes"] > 0
    assert len(success["sha256"]) == 64
    assert success["durationSeconds"] > 0
    assert backup_ns.condition("nightly", "LastBackupSucceeded")["status"] == "True"
    assert "Succeeded" in backup_ns.kubectl("get", "dbb", "nightly", "--no-headers").split()
    assert [e["type"] for e in backup_ns.events("BackupSucceeded")] == ["Normal"]
    assert f'learnops_backup_last_result{{name="nightly",namespace="{backup_ns.name}"}} 1.0' in (
        operator.metrics()
    )
    if pod_runner is not None:  # storage is visible only where we host the PVC
        storage = pod_runner.pvc_dir(backup_ns.name, "backups")
        [manifest_path] = storage.glob("nightly-*.manifest.json")
        manifest = json.loads(manifest_path.read_text())
        assert manifest["status"] == "ok"
        assert manifest["sha256"] == success["sha256"]
        assert (storage / success["artifact"]).stat().st_size == success["sizeBytes"]
        assert all(canary not in p.read_text(errors="replace") for p in storage.rglob("*.json"))
    _assert_canary_absent(backup_ns, operator, canary)


def test_a_real_authentication_failure_is_reported_without_the_password(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    canary_db: tuple[Conn, str],
) -> None:
    conn, _ = canary_db
    wrong = f"wrong-{secrets.token_hex(8)}"
    _declare(backup_ns, conn, wrong, "broken")
    st = _run_now(backup_ns, "broken", "e2e-2")
    assert st["lastResult"] == "Failed", st
    failed = st["lastFailedBackup"]
    assert (failed["reason"], failed["exitCode"]) == ("ConnectionError", 3)
    assert "password authentication failed" in failed["message"]
    assert st["consecutiveFailures"] == 1
    cond = backup_ns.condition("broken", "LastBackupSucceeded")
    assert (cond["status"], cond["reason"]) == ("False", "ConnectionError")
    assert [e["type"] for e in backup_ns.events("BackupFailed")] == ["Warning"]
    _assert_canary_absent(backup_ns, operator, wrong)


def test_a_hung_backup_is_stopped_by_its_deadline_and_reported_as_a_timeout(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    canary_db: tuple[Conn, str],
) -> None:
    conn, canary = canary_db
    # The smallest deadline the CRD allows; the runner's own timeout fires min(30 s, 10 %) earlier.
    _declare(backup_ns, conn, canary, "hung", timeoutSeconds=60)
    with pg_cluster.connect(pg_cluster.admin.with_db(conn.dbname)) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE")  # pg_dump waits
        st = _run_now(backup_ns, "hung", "e2e-3", timeout=150)
        blocker.rollback()
    failed = st["lastFailedBackup"]
    assert (failed["reason"], failed["exitCode"]) == ("Timeout", 5), st
    assert st["lastResult"] == "Failed"
    job = backup_ns.items("jobs")[0]
    assert job["spec"]["activeDeadlineSeconds"] == 60
    if pod_runner is not None:
        storage = pod_runner.pvc_dir(backup_ns.name, "backups")
        [manifest] = storage.glob("hung-*.manifest.json")
        assert json.loads(manifest.read_text())["status"] == "failed"
        assert not [p for p in storage.glob("hung-*") if ".dump" in p.name]


def _assert_canary_absent(ns: Namespace, operator: OperatorProcess, canary: str) -> None:
    written = ns.kubectl("get", "databasebackups,cronjobs,jobs,events,leases", "-o", "json")
    assert canary not in written
    pods = json.loads(ns.kubectl("get", "pods", "-o", "json"))["items"]
    assert canary not in json.dumps([[p["metadata"], p["spec"], p["status"]] for p in pods])
    assert canary not in operator.logs()
