"""Smoke tests for the cluster provider: the API server, its controllers, and RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for

CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: every-minute}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: example.invalid/none:1}]
"""


def test_a_configmap_round_trips_through_a_namespace(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "configmap", "cm", "-n", namespace, "--from-literal=k=v")
    out = kube_cluster.kubectl("get", "configmap", "cm", "-n", namespace, "-o", "json").stdout
    assert json.loads(out)["data"] == {"k": "v"}
    # the tests' in-process reads (KubeCluster.read) answer what kubectl answers
    assert kube_cluster.read("configmap", "cm", namespace=namespace) == json.loads(out)
    assert kube_cluster.read("configmap", "absent", namespace=namespace) is None
    listed = kube_cluster.read("configmaps", namespace=namespace, selector="app=none")
    assert listed is not None
    assert listed["items"] == []
    listed = kube_cluster.read("configmaps", namespace=namespace)
    assert listed is not None
    named = {item["metadata"]["name"]: item for item in listed["items"]}
    assert named["cm"]["kind"] == "ConfigMap"
    assert named["cm"]["apiVersion"] == "v1"
    assert named["cm"]["data"] == {"k": "v"}


def test_a_cronjob_scheduled_every_minute_produces_a_job(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=CRONJOB)

    def job_exists() -> bool:
        listed = kube_cluster.read("jobs", namespace=namespace) or {}
        return any(
            ref["name"] == "every-minute"
            for item in listed.get("items", [])
            for ref in item["metadata"].get("ownerReferences", [])
        )

    wait_for(job_exists, 75, "the CronJob controller to create a Job")


def test_deleting_an_owner_garbage_collects_its_child(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = kube_cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    kube_cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def child_gone() -> bool:
        got = kube_cluster.kubectl("get", "configmap", "child", "-n", namespace, check=False)
        return got.returncode != 0 and "NotFound" in got.stderr

    wait_for(child_gone, 30, "the garbage collector to delete the child")


def test_a_service_account_is_denied_what_it_was_not_granted(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    sa = f"system:serviceaccount:{namespace}:reader"
    kube_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kube_cluster.kubectl(
        "create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps"
    )
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )
    kube_cluster.kubectl("create", "secret", "generic", "s", "-n", namespace, "--from-literal=k=v")

    assert kube_cluster.kubectl("get", "configmaps", "-n", namespace, as_user=sa).returncode == 0
    denied = kube_cluster.kubectl("get", "secrets", "-n", namespace, as_user=sa, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr

    # The same holds through the Python client acting as that service account.
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_cluster.api(impersonate=sa))
    assert core.list_namespaced_config_map(namespace).items is not None
    with pytest.raises(ApiException) as denied_py:
        core.list_namespaced_secret(namespace)
    assert denied_py.value.status == 403


def test_a_service_account_kubeconfig_authenticates_with_a_real_token(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "bot", "-n", namespace)
    path = kube_cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:bot")
    who = subprocess.run(
        [str(kube_cluster.kubectl_path), f"--kubeconfig={path}", "auth", "whoami", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{namespace}:bot"
    )


def test_the_same_cluster_tests_pass_through_the_existing_provider(
    kube_cluster: KubeCluster,
) -> None:
    """LEARNOPS_CLUSTER=existing + KUBECONFIG runs the suite on any cluster; prove it on ours."""
    if kube_cluster.provider == "existing":
        pytest.skip("already running through the existing provider")
    env = {**os.environ, "LEARNOPS_CLUSTER": "existing", "KUBECONFIG": str(kube_cluster.kubeconfig)}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "configmap or denied or garbage"],
        env=env, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert "3 passed" in ran.stdout
