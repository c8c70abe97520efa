"""`kubectl learnops` against the control plane alone, run the way users run it (kubectl finds
the `kubectl-learnops` console script on PATH): usage, --wait timeouts, -o json, status, and the
documented exit codes for missing objects and an unreachable API server.

Waiting for runs that finish (backup-now and restore --wait, the inventory a run leaves) needs
pods that really run: tests/e2e/test_plugin_e2e.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, backup
from tests.support.plugin_cli import plugin


@pytest.fixture
def nightly(backup_ns: Namespace, operator: OperatorProcess) -> Namespace:
    backup_ns.apply(backup("nightly", backoffLimit=0))  # a failed pod fails its Job
    wait_for(lambda: backup_ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")
    return backup_ns


def test_help_and_usage_errors(kube_cluster: KubeCluster) -> None:
    proc = plugin(kube_cluster, "--help")
    assert proc.returncode == 0
    for word in ("backups", "backup-now", "restore", "status", "exit codes"):
        assert word in proc.stdout
    assert plugin(kube_cluster, "restore", "--help").returncode == 0
    bad = plugin(kube_cluster, "frobnicate")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
    assert plugin(kube_cluster, "restore", "nightly").returncode == 2  # --to is required


def test_backup_now_times_out_with_exit_code_4(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    started = time.monotonic()
    proc = plugin(kube_cluster, "-n", nightly.name, "backup-now", "nightly", "--timeout", "2")
    assert proc.returncode == 4, proc.stderr
    assert "timed out waiting" in proc.stderr
    assert time.monotonic() - started < 60
    assert nightly.items("jobs")  # the run itself goes on


def test_backups_lists_an_empty_inventory_and_exits_3_for_a_missing_resource(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    empty = plugin(kube_cluster, "-n", nightly.name, "backups", "nightly")
    assert empty.returncode == 0
    assert "no artifacts recorded yet" in empty.stdout
    missing = plugin(kube_cluster, "-n", nightly.name, "backups", "nope")
    assert missing.returncode == 3
    assert "not found" in missing.stderr


def test_a_restore_that_does_not_finish_in_time_exits_4_and_one_without_wait_returns_at_once(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    # no kubelet here: the restore pod never finishes
    slow = plugin(
        kube_cluster,
        "-n",
        nightly.name,
        "restore",
        "nightly",
        "--to",
        "pg",
        "--wait",
        "--timeout",
        "2",
    )
    assert slow.returncode == 4, slow.stderr
    assert "timed out waiting" in slow.stderr
    nowait = plugin(
        kube_cluster, "-n", nightly.name, "restore", "nightly", "--to", "pg", "-o", "json"
    )
    assert nowait.returncode == 0
    assert json.loads(nowait.stdout)["name"].startswith("nightly-restore-")
    usage = plugin(
        kube_cluster, "-n", nightly.name, "restore", "nightly", "--to", "pg", "--host", "h"
    )
    assert usage.returncode == 2
    assert "--pgpass" in usage.stderr


def test_status_shows_a_backup_or_a_restore_and_exit_codes_for_missing_and_unreachable(
    kube_cluster: KubeCluster, nightly: Namespace, tmp_path: Path
) -> None:
    text = plugin(kube_cluster, "-n", nightly.name, "status", "nightly")
    assert text.returncode == 0
    assert text.stdout.startswith(f"DatabaseBackup {nightly.name}/nightly")
    assert "Ready" in text.stdout
    data = json.loads(
        plugin(kube_cluster, "status", "nightly", "-n", nightly.name, "-o", "json").stdout
    )
    assert data["kind"] == "DatabaseBackup"
    assert condition(data["status"], "Ready")
    missing = plugin(kube_cluster, "-n", nightly.name, "status", "nope")
    assert missing.returncode == 3
    assert "no DatabaseBackup or DatabaseRestore" in missing.stderr
    dead = tmp_path / "dead.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    dead.write_text(json.dumps(config))
    gone = plugin(kube_cluster, "status", "nightly", kubeconfig=dead)
    assert gone.returncode == 5, gone.stderr
    assert "cannot reach the API server" in gone.stderr
