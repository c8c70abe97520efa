"""`kubectl learnops` waiting for runs whose pods really run: `backup-now --wait` on a success and
a failure, the inventory a run leaves, and `restore --wait` on a success and a refusal.

The pods play scenarios of tests/e2e/scenario-image (tests/support/scenario_pods.py); what needs
no pod to finish (usage, timeouts, status, an unreachable server) is tests/cluster/test_plugin.py's.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.kube import KubeCluster
from tests.support.operator import Namespace, OperatorProcess
from tests.support.plugin_cli import background, plugin
from tests.support.scenario_pods import add_secret, ready, scenario_backup


@pytest.fixture
def nightly(backup_ns: Namespace, scenario_operator: OperatorProcess) -> Namespace:
    backup_ns.add_pgpass_secret("unused")
    backup_ns.apply(scenario_backup("nightly"))
    ready(backup_ns, "nightly")
    return backup_ns


def _on_demand_jobs(ns: Namespace) -> list[str]:
    return [j["metadata"]["name"] for j in ns.items("jobs", "learnops.io/trigger=on-demand")]


def test_backup_now_waits_prints_the_result_as_text_and_json_and_backups_lists_it(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    empty = plugin(kube_cluster, "-n", nightly.name, "backups", "nightly")
    assert empty.returncode == 0
    assert "no artifacts recorded yet" in empty.stdout
    done = plugin(kube_cluster, "-n", nightly.name, "backup-now", "nightly", "--timeout", "90")
    assert done.returncode == 0, done.stderr
    [job] = _on_demand_jobs(nightly)
    artifact = nightly.status("nightly")["lastSuccessfulBackup"]["artifact"]
    assert done.stdout.startswith(f"Succeeded: {job} wrote {artifact}")
    # the inventory the run left
    text = plugin(kube_cluster, "-n", nightly.name, "backups", "nightly")
    assert text.returncode == 0
    header, row = text.stdout.splitlines()
    assert header.split()[:3] == ["ARTIFACT", "TIME", "SIZE"]
    assert row.split()[0] == artifact
    assert "5.0Mi" in row
    data = json.loads(
        plugin(kube_cluster, "-n", nightly.name, "-o", "json", "backups", "nightly").stdout
    )
    assert [a["name"] for a in data["artifacts"]] == [artifact]
    # the same resource, now connecting as a user whose runs fail
    patch = {"spec": {"database": {"user": "failed"}}}
    nightly.kubectl("patch", "dbb", "nightly", "--type=merge", "-p", json.dumps(patch))
    run = background(
        kube_cluster, "backup-now", "nightly", "-n", nightly.name, "-o", "json", "--timeout", "90"
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    [second] = [j for j in _on_demand_jobs(nightly) if j != job]
    data = json.loads(out)
    assert (data["job"], data["succeeded"]) == (second, False)
    assert data["result"]["reason"] == "ConnectionError"


def test_restore_waits_for_a_success_and_exits_1_for_a_refusal(
    kube_cluster: KubeCluster, nightly: Namespace
) -> None:
    add_secret(nightly, "restore-url", key="url")  # a URL Secret: the pod plays restore/default
    add_secret(nightly, "pg")
    # both at once: their pods run side by side
    ok = background(
        kube_cluster,
        "-n", nightly.name, "restore", "nightly", "--to", "restore-url", "--artifact",
        "nightly-20261130T020000Z.dump", "--database", "app_copy", "--policy", "create",
        "--jobs", "4", "--no-owner", "--wait", "--timeout", "90", "-o", "json",
    )  # fmt: skip
    refused = background(
        kube_cluster, "-n", nightly.name, "restore", "nightly", "--to", "pg",
        "--pgpass", "--host", "scratch.example", "--user", "not-empty", "--wait",
        "--timeout", "90",
    )  # fmt: skip
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
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
    job = nightly.get("job", f"{name}-restore-g1") or {}
    assert job["status"].get("succeeded") == 1
    status = plugin(kube_cluster, "-n", nightly.name, "status", name)
    assert status.returncode == 0
    assert status.stdout.splitlines()[1].startswith(f"Succeeded: DatabaseRestore {name}")
    assert "3 tables, 1234 rows checked" in status.stdout

    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 1, err
    assert out.startswith("Failed: DatabaseRestore nightly-restore-")
    assert "(TargetNotEmpty)" in out
    [other] = [r for r in nightly.items("databaserestores") if r["metadata"]["name"] != name]
    target = other["spec"]["target"]
    assert target["pgpassSecretRef"]["name"] == "pg"
    assert target["dbname"].startswith("restored_nightly_")
    assert target["policy"] == "create"
