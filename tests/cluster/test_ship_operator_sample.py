"""The operator, configured exactly as manifests/operator/deployment.yaml configures it and acting
as its ServiceAccount, reconciles manifests/samples/ and starts a backup pod that the restricted
Pod Security Standard admits."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import OperatorProcess
from tests.support.ship import MANIFESTS, kustomize

SAMPLE_NS = "learnops"
SAMPLE = "learnops-nightly"


def deployment_env() -> dict[str, str]:
    """The operator container's env from manifests/, with the downward API filled in."""
    (deployment,) = [
        d
        for d in kustomize(".")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "learnops-operator"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    downward = {"metadata.name": "learnops-operator-test", "metadata.namespace": "learnops-system"}
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.fixture
def installed(kube_cluster: KubeCluster, operator_kubeconfig: Path) -> None:
    kube_cluster.kubectl("apply", "-k", str(MANIFESTS))
    kube_cluster.kubectl("apply", "-k", str(MANIFESTS / "samples"))


@pytest.fixture
def operator_as_deployed(
    installed: None, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNOPS_")}
    env |= deployment_env()
    env["KUBECONFIG"] = str(operator_kubeconfig)
    # Free ports instead of 8080/9090 (flags beat env); only the sample namespace, so leftovers
    # of other tests are not touched; a short Lease so a stale holder expires quickly.
    argv = [sys.executable, "-m", "learnops_operator", f"--namespace={SAMPLE_NS}",
            "--lease-duration=4", "--sweep-interval=1"]  # fmt: skip
    process = OperatorProcess(argv, env, tmp_path / "operator.log")
    try:
        process.wait_live()
        yield process
    finally:
        process.stop()
        print(*process.logs().splitlines()[-40:], sep="\n")


def get(kube: KubeCluster, *args: str) -> dict[str, Any] | None:
    proc = kube.kubectl("get", *args, "-n", SAMPLE_NS, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def condition_status(kube: KubeCluster, kind: str) -> str | None:
    body = get(kube, "databasebackup", SAMPLE) or {}
    status = condition(body.get("status"), kind).get("status")
    return None if status is None else str(status)


def test_the_deployed_operator_reconciles_the_sample_and_its_backup_pod_is_admitted(
    kube_cluster: KubeCluster, operator_as_deployed: OperatorProcess
) -> None:
    wait_for(lambda: condition_status(kube_cluster, "Ready") == "True", 40, "sample Ready=True")
    cronjob = get(kube_cluster, "cronjob", f"{SAMPLE}-backup")
    assert cronjob is not None
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    job_spec = cronjob["spec"]["jobTemplate"]["spec"]
    assert job_spec["activeDeadlineSeconds"] == 3600
    (container,) = job_spec["template"]["spec"]["containers"]
    assert container["image"] == deployment_env()["LEARNOPS_DUMP_IMAGE"]

    kube_cluster.kubectl(
        "annotate", "databasebackup", SAMPLE, "-n", SAMPLE_NS, "--overwrite",
        "learnops.io/backup-now=ship-test",
    )  # fmt: skip

    def backup_pods() -> list[dict[str, Any]]:
        pods = get(kube_cluster, "pods", "-l", f"app.kubernetes.io/instance={SAMPLE}") or {}
        items: list[dict[str, Any]] = pods.get("items", [])
        return items

    # The Job controller creates the pod only if restricted admission accepts it.
    pods = wait_for(backup_pods, 40, "the on-demand backup pod")
    assert pods[0]["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    events = get(kube_cluster, "events") or {}
    refused = [e["message"] for e in events["items"] if e.get("reason") == "FailedCreate"]
    assert refused == []
