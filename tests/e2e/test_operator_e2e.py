"""The operator with pods that really run on the kind node: the dump image backs up the
PostgreSQL pod, and the result travels kubelet → termination message → DatabaseBackup status,
Events and metrics.

These are the status-flow assertions of tests/cluster/test_operator_runs.py, with the values the
real runner produced instead of a hand-written summary; the storage is read on the node.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.harness.platform import Platform
from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.operator import DUMP_IMAGE, Namespace, OperatorProcess, backup


@pytest.fixture
def canary_db(pg_cluster: PodPostgres, pg_db: Conn) -> tuple[Conn, str]:
    """A backup role whose password is a unique canary, allowed to read pg_db; the connection
    as the dump pod makes it (through the PostgreSQL Service)."""
    canary = f"canary-{secrets.token_hex(8)}"
    role = f"backup_{secrets.token_hex(4)}"
    pg_cluster.create_user(role, canary)
    with pg_cluster.connect(pg_db) as c:
        c.execute(f'GRANT pg_read_all_data TO "{role}"')
    return pg_cluster.in_cluster(Conn(pg_db.host, pg_db.port, role, canary, pg_db.dbname)), canary


def test_a_real_backup_pod_reports_success_on_the_resource(
    backup_ns: Namespace,
    operator: OperatorProcess,
    platform: Platform,
    canary_db: tuple[Conn, str],
) -> None:
    conn, canary = canary_db
    backup_ns.declare_backup(conn, canary, "nightly")
    st = backup_ns.run_now("nightly", "e2e-1")
    assert st["lastResult"] == "Succeeded", st
    assert st["consecutiveFailures"] == 0
    success = st["lastSuccessfulBackup"]
    assert success["artifact"].startswith("nightly-")
    assert ".dump" in success["artifact"]  # custom format, maybe with a compressor suffix
    assert success["sizeBytes"] > 0
    assert len(success["sha256"]) == 64
    assert success["durationSeconds"] > 0
    [job] = backup_ns.items("jobs")
    assert success["job"] == job["metadata"]["name"]
    assert job["status"].get("succeeded") == 1  # the Job controller saw the pod succeed
    assert backup_ns.condition("nightly", "LastBackupSucceeded")["status"] == "True"
    assert "Succeeded" in backup_ns.kubectl("get", "dbb", "nightly", "--no-headers").split()
    assert [e["type"] for e in backup_ns.events("BackupSucceeded", at_least=1)] == ["Normal"]
    key = f'{{name="nightly",namespace="{backup_ns.name}"}}'
    # the operator updates its metrics right after the Event, so read them once they have it
    metrics = wait_for(
        lambda: m if f"learnops_backup_last_result{key} 1.0" in (m := operator.metrics()) else "",
        15,
        "the run in the operator's metrics",
    )
    assert f"learnops_backup_last_size_bytes{key} {float(success['sizeBytes'])}" in metrics
    files = platform.volume_files(backup_ns.name, "backups")
    [manifest_name] = [
        n for n in files if n.startswith("nightly-") and n.endswith(".manifest.json")
    ]
    manifest = json.loads(files[manifest_name])
    assert manifest["status"] == "ok"
    assert manifest["sha256"] == success["sha256"]
    assert len(files[success["artifact"]]) == success["sizeBytes"]
    assert json.loads(files["nightly.latest.json"])["artifact"] == success["artifact"]
    assert all(canary.encode() not in data for data in files.values())
    _assert_canary_absent(backup_ns, operator, canary)


def test_a_real_authentication_failure_is_reported_without_the_password(
    backup_ns: Namespace,
    operator: OperatorProcess,
    canary_db: tuple[Conn, str],
) -> None:
    conn, _ = canary_db
    wrong = f"wrong-{secrets.token_hex(8)}"
    backup_ns.declare_backup(conn, wrong, "broken")
    st = backup_ns.run_now("broken", "e2e-2")
    assert st["lastResult"] == "Failed", st
    failed = st["lastFailedBackup"]
    assert (failed["reason"], failed["exitCode"]) == ("ConnectionError", 3)
    assert "password authentication failed" in failed["message"]
    assert st["consecutiveFailures"] == 1
    cond = backup_ns.condition("broken", "LastBackupSucceeded")
    assert (cond["status"], cond["reason"]) == ("False", "ConnectionError")
    assert [e["type"] for e in backup_ns.events("BackupFailed", at_least=1)] == ["Warning"]
    # a second failing run is counted and reported once more, not twice
    backup_ns.kubectl("annotate", "dbb", "broken", "--overwrite", "learnops.io/backup-now=e2e-2b")
    wait_for(lambda: backup_ns.status("broken").get("consecutiveFailures") == 2, 120, "failure 2")
    assert [e["type"] for e in backup_ns.events("BackupFailed", at_least=2)] == [
        "Warning",
        "Warning",
    ]
    assert f'learnops_backup_last_result{{name="broken",namespace="{backup_ns.name}"}} 0.0' in (
        operator.metrics()
    )
    _assert_canary_absent(backup_ns, operator, wrong)


def test_a_missing_secret_is_learned_from_the_kubelets_mount_failure(
    backup_ns: Namespace, operator: OperatorProcess, canary_db: tuple[Conn, str]
) -> None:
    conn, _ = canary_db
    backup_ns.apply(
        backup(
            "nosecret",
            database={"host": conn.host, "port": conn.port, "dbname": conn.dbname,
                      "user": conn.user, "pgpassSecretRef": {"name": "pg-missing"}},
            image=DUMP_IMAGE, imagePullPolicy="Never", backoffLimit=0,
        )
    )  # fmt: skip
    wait_for(lambda: backup_ns.condition("nosecret", "Ready").get("status") == "True", 30, "Ready")
    backup_ns.kubectl("annotate", "dbb", "nosecret", "learnops.io/backup-now=t1")
    # the real kubelet cannot mount the Secret volume and says so in a FailedMount Event
    cond = wait_for(
        lambda: (
            (c := backup_ns.condition("nosecret", "Ready")).get("reason") == "SecretNotFound" and c
        ),
        120,
        "Ready=False/SecretNotFound",
    )
    assert cond["status"] == "False"
    assert "pg-missing" in cond["message"]
    assert [e["type"] for e in backup_ns.events("SecretNotFound", at_least=1)] == ["Warning"]
    backup_ns.kubelet_event("FailedMount")


def test_no_success_within_two_schedule_intervals_is_reported_until_a_real_run_succeeds(
    backup_ns: Namespace, operator: OperatorProcess, canary_db: tuple[Conn, str]
) -> None:
    conn, canary = canary_db
    backup_ns.declare_backup(conn, canary, "stale", schedule="0 3 * * *")
    # stand-in for history: the last success was three days ago (daily schedule)
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"status": {"lastSuccessfulBackup": {"time": three_days_ago, "job": "old"}}}
    backup_ns.kubectl(
        "patch", "dbb", "stale", "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
    cond = wait_for(
        lambda: (c := backup_ns.condition("stale", "OnSchedule")).get("status") == "False" and c,
        30,
        "OnSchedule=False",
    )
    assert cond["reason"] == "MissedRuns"
    assert "two schedule intervals" in cond["message"]
    assert [e["type"] for e in backup_ns.events("MissedRuns", at_least=1)] == ["Warning"]
    st = backup_ns.run_now("stale", "catch-up")
    assert st["lastResult"] == "Succeeded", st
    wait_for(
        lambda: backup_ns.condition("stale", "OnSchedule").get("status") == "True",
        30,
        "OnSchedule=True after a real success",
    )


def test_a_hung_backup_is_stopped_by_its_deadline_and_reported_as_a_timeout(
    backup_ns: Namespace,
    operator: OperatorProcess,
    platform: Platform,
    pg_cluster: PodPostgres,
    canary_db: tuple[Conn, str],
) -> None:
    conn, canary = canary_db
    # The smallest deadline the CRD allows; the runner's own timeout fires min(30 s, 10 %) earlier.
    backup_ns.declare_backup(conn, canary, "hung", timeoutSeconds=60)
    seen: list[str] = []
    with pg_cluster.connect(pg_cluster.admin.with_db(conn.dbname)) as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE")  # pg_dump waits
        # While pg_dump hangs, the node's process list (arguments and environments of every
        # process, the dump's included) is sampled.
        sampler = threading.Thread(target=lambda: seen.append(_while_dumping(platform)))
        sampler.start()
        st = backup_ns.run_now("hung", "e2e-3", timeout=150)
        sampler.join()
        blocker.rollback()
    [processes] = seen
    assert "pg_dump" in processes, "the sample missed the running dump"
    assert canary not in processes
    failed = st["lastFailedBackup"]
    assert st["lastResult"] == "Failed"
    # Either the runner's own timeout (exit 5, a failed manifest) or, when the pod's start-up
    # (scheduling, binding the volume) ate the margin, the Job's deadline: both are a Timeout.
    assert failed["reason"] == "Timeout", st
    assert failed.get("exitCode") in (5, None), st
    job = backup_ns.items("jobs")[0]
    assert job["spec"]["activeDeadlineSeconds"] == 60
    files = platform.volume_files(backup_ns.name, "backups")
    assert not [n for n in files if n.startswith("hung-") and ".dump" in n]
    assert not [n for n in files if n.startswith(".tmp-")]
    if failed.get("exitCode") == 5:
        [manifest] = [n for n in files if n.startswith("hung-") and n.endswith(".manifest.json")]
        assert json.loads(files[manifest])["status"] == "failed"
    _assert_canary_absent(backup_ns, operator, canary)


def _while_dumping(platform: Platform, timeout: float = 90) -> str:
    """The node's process list at a moment when pg_dump runs."""

    def sample() -> str | None:
        processes = platform.node_processes()
        return processes if "pg_dump" in processes else None

    out: str = wait_for(sample, timeout, "pg_dump running on the node", every=1)
    return out


def _assert_canary_absent(ns: Namespace, operator: OperatorProcess, canary: str) -> None:
    written = ns.kubectl("get", "databasebackups,cronjobs,jobs,events,leases", "-o", "json")
    assert canary not in written
    pods = json.loads(ns.kubectl("get", "pods", "-o", "json"))["items"]
    assert canary not in json.dumps([[p["metadata"], p["spec"], p["status"]] for p in pods])
    assert canary not in operator.logs()
    # what every container of every pod printed (the dump pods' logs)
    for pod in pods:
        for container in pod["spec"]["containers"]:
            logs = ns.kubectl("logs", pod["metadata"]["name"], "-c", container["name"], check=False)
            assert canary not in logs


def test_each_database_and_the_globals_of_a_real_run_get_their_own_status_entry(
    backup_ns: Namespace,
    operator: OperatorProcess,
    platform: Platform,
    pg_cluster: PodPostgres,
    canary_db: tuple[Conn, str],
) -> None:
    conn, canary = canary_db
    second = f"{conn.dbname[:50]}_b"
    pg_cluster.create_database(second)
    try:
        # one pgpass line for every database of the server (libpq's `*`)
        line = f"{conn.host}:{conn.port}:*:{conn.user}:{canary}\n"
        backup_ns.kubectl(
            "create", "secret", "generic", "multi-pgpass", "--from-file=pgpass=/dev/stdin",
            input=line,
        )  # fmt: skip
        database = {
            "host": conn.host, "port": conn.port, "dbname": conn.dbname, "user": conn.user,
            "sslMode": "disable", "pgpassSecretRef": {"name": "multi-pgpass", "key": "pgpass"},
            "dbnames": [conn.dbname, second],
        }  # fmt: skip
        backup_ns.apply(
            backup("multi", database=database, globals=True, image=DUMP_IMAGE,
                   imagePullPolicy="Never", backoffLimit=0)
        )  # fmt: skip
        wait_for(lambda: backup_ns.condition("multi", "Ready").get("status") == "True", 30, "Ready")
        st = backup_ns.run_now("multi", "e2e-multi")
        assert st["lastResult"] == "Succeeded", st
        success = st["lastSuccessfulBackup"]
        assert [d["database"] for d in success["databases"]] == [conn.dbname, second]
        assert all(len(d["sha256"]) == 64 and d["sizeBytes"] > 0 for d in success["databases"])
        assert success["globals"]["artifact"].endswith(".globals.sql")
        assert success["globals"]["rolePasswords"] is False
        message = backup_ns.condition("multi", "LastBackupSucceeded")["message"]
        assert "2 database artifacts" in message
        files = platform.volume_files(backup_ns.name, "backups")
        for entry in [*success["databases"], success["globals"]]:
            assert len(files[entry["artifact"]]) == entry["sizeBytes"]
        assert all(canary.encode() not in data for data in files.values())
        _assert_canary_absent(backup_ns, operator, canary)
    finally:
        pg_cluster.drop_database(second)
