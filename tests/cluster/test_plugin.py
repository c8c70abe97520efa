"""`kubectl learnops` against the local cluster, run the way users run it: kubectl finds the
`kubectl-learnops` console script on PATH. Every subcommand, --wait and its timeout, -o json,
and the documented exit codes.

No kubelet here: the runs' pods are finished through pods/status, as a kubelet would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import (
    Namespace,
    OperatorProcess,
    backup,
    dump_summary,
    restore_summary,
)

BIN = Path(sys.executable).parent  # where `uv sync` installed kubectl-learnops


def _env(kube_cluster: KubeCluster, kubeconfig: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{kube_cluster.kubectl_path.parent}{os.pathsep}{env['PATH']}"
    env["KUBECONFIG"] = str(kubeconfig or kube_cluster.kubeconfig)
    return env


def plugin(
    kube_cluster: KubeCluster, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kube_cluster.kubectl_path), "learnops", *args],
        env=_env(kube_cluster, kubeconfig),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def background(kube_cluster: KubeCluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(kube_cluster.kubectl_path), "learnops", *args],
        env=_env(kube_cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def nightly(backup_ns: Namespace, operator: OperatorProcess) -> Namespace:
    backup_ns.apply(backup("nightly", backoffLimit=0))  # a failed pod fails its Job
    wait_for(lambda: backup_ns.condition("nightly", "Ready").get("status") == "True", 20, "Ready")
    return backup_ns


def _finish_next_job(ns: Namespace, selector: str, exit_code: int, summary: dict[str, Any]) -> str:
    job = wait_for(lambda: ns.items("jobs", selector), 30, f"a Job ({selector})")[0]
    name = str(job["metadata"]["name"])
    ns.run_job(name, exit_code, summary)
    return name


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


def test_backup_now_waits_and_prints_the_result_as_text_and_json(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    run = background(kube_cluster, "-n", nightly.name, "backup-now", "nightly", "--timeout", "60")
    job = _finish_next_job(nightly, "learnops.io/trigger=on-demand", 0, dump_summary("nightly"))
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    assert out.startswith(f"Succeeded: {job} wrote nightly-20261130T020000Z.dump")
    run = background(
        kube_cluster, "backup-now", "nightly", "-n", nightly.name, "-o", "json", "--timeout", "60"
    )
    wait_for(lambda: len(nightly.items("jobs")) == 2, 30, "a second on-demand Job")
    second = next(
        j["metadata"]["name"] for j in nightly.items("jobs") if j["metadata"]["name"] != job
    )
    nightly.run_job(second, 3, dump_summary("nightly", ok=False))
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, err
    data = json.loads(out)
    assert (data["job"], data["succeeded"]) == (second, False)
    assert data["result"]["reason"] == "ConnectionError"


def test_backup_now_times_out_with_exit_code_4(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    started = time.monotonic()
    proc = plugin(kube_cluster, "-n", nightly.name, "backup-now", "nightly", "--timeout", "2")
    assert proc.returncode == 4, proc.stderr
    assert "timed out waiting" in proc.stderr
    assert time.monotonic() - started < 60
    assert nightly.items("jobs")  # the run itself goes on


def test_backups_lists_the_inventory(kube_cluster: KubeCluster, nightly: Namespace) -> None:
    empty = plugin(kube_cluster, "-n", nightly.name, "backups", "nightly")
    assert empty.returncode == 0
    assert "no artifacts recorded yet" in empty.stdout
    nightly.kubectl("annotate", "dbb", "nightly", "learnops.io/backup-now=one")
    _finish_next_job(nightly, "learnops.io/trigger=on-demand", 0, dump_summary("nightly"))
    wait_for(
        lambda: (nightly.get("dbb", "nightly") or {}).get("status", {}).get("artifacts"),
        30,
        "the inventory",
    )
    text = plugin(kube_cluster, "-n", nightly.name, "backups", "nightly")
    assert text.returncode == 0
    header, row = text.stdout.splitlines()
    assert header.split()[:3] == ["ARTIFACT", "TIME", "SIZE"]
    assert row.split()[0] == "nightly-20261130T020000Z.dump"
    assert "5.0Mi" in row
    data = json.loads(
        plugin(kube_cluster, "-n", nightly.name, "-o", "json", "backups", "nightly").stdout
    )
    assert [a["name"] for a in data["artifacts"]] == ["nightly-20261130T020000Z.dump"]
    missing = plugin(kube_cluster, "-n", nightly.name, "backups", "nope")
    assert missing.returncode == 3
    assert "not found" in missing.stderr


def test_restore_creates_a_database_restore_and_waits_for_it(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    run = background(
        kube_cluster,
        "-n", nightly.name, "restore", "nightly", "--to", "restore-url", "--artifact",
        "nightly-20261130T020000Z.dump", "--database", "app_copy", "--policy", "create",
        "--jobs", "4", "--no-owner", "--wait", "--timeout", "60", "-o", "json",
    )  # fmt: skip
    _finish_next_job(nightly, "app.kubernetes.io/component=restore", 0, restore_summary())
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    data = json.loads(out)
    assert data["status"]["phase"] == "Succeeded"
    name = data["name"]
    assert name.startswith("nightly-restore-")
    spec = (nightly.get("databaserestore", name) or {})["spec"]
    assert spec["source"]["backupRef"] == {
        "name": "nightly",
        "artifact": "nightly-20261130T020000Z.dump",
    }
    assert spec["target"]["urlSecretRef"] == {"name": "restore-url"}
    assert (spec["target"]["dbname"], spec["target"]["policy"]) == ("app_copy", "create")
    assert spec["options"]["jobs"] == 4
    assert spec["options"]["noOwner"] is True
    status = plugin(kube_cluster, "-n", nightly.name, "status", name)
    assert status.returncode == 0
    assert status.stdout.splitlines()[1].startswith(f"Succeeded: DatabaseRestore {name}")
    assert "3 tables, 1234 rows checked" in status.stdout


def test_a_failed_restore_exits_1_and_a_slow_one_times_out_with_4(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    run = background(
        kube_cluster, "-n", nightly.name, "restore", "nightly", "--to", "pg",
        "--pgpass", "--host", "scratch.example", "--user", "restorer", "--wait", "--timeout", "60",
    )  # fmt: skip
    _finish_next_job(nightly, "app.kubernetes.io/component=restore", 9, restore_summary(False))
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, err
    assert out.startswith("Failed: DatabaseRestore nightly-restore-")
    assert "(TargetNotEmpty)" in out
    restores = nightly.items("databaserestores")
    target = restores[0]["spec"]["target"]
    assert target["pgpassSecretRef"]["name"] == "pg"
    assert target["dbname"].startswith("restored_nightly_")
    assert target["policy"] == "create"
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
