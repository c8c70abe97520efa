"""A clear word when the operator cannot start its work: a missing CRD, missing RBAC or a missing
Lease namespace each give one readable log line and a failing /readyz, never a repeated raw
HTTP dump; once fixed, the operator becomes ready and works.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import (
    CRD,
    Namespace,
    OperatorProcess,
    Operators,
    backup,
)

RAW_DUMP_MARKERS = ("HTTP response headers", "HTTP response body", "Traceback", "'kind': 'Status'")


def _blocked_lines(process: OperatorProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") in ("operator.blocked", "lease.error")]


def _blocked_by(process: OperatorProcess, words: str) -> str:
    def problem() -> str | None:
        code, body = process.readyz()
        found = [p for p in body.get("problems") or () if words in p]
        return found[0] if code == 503 and found else None

    text: str = wait_for(problem, 30, f"/readyz 503 naming {words!r}")
    return text


def _assert_said_once(process: OperatorProcess, problem: str) -> None:
    time.sleep(8)  # several quiet retries (2 s, 5 s ...) in between
    lines = _blocked_lines(process)
    assert [line["message"] for line in lines] == [problem], lines
    logs = process.logs()
    for marker in RAW_DUMP_MARKERS:
        assert marker not in logs, logs[-3000:]


@pytest.fixture
def bare_account(kube_cluster: KubeCluster, namespace: str) -> Path:
    """A ServiceAccount without any RBAC binding; its kubeconfig."""
    kube_cluster.kubectl("create", "serviceaccount", "op", "-n", namespace)
    return kube_cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:op")


def test_missing_rbac_is_one_readable_line_and_not_ready_until_granted(
    kube_cluster: KubeCluster,
    namespace: str,
    operators: Operators,
    bare_account: Path,
    operator_kubeconfig: Path,
) -> None:
    process = operators.start(namespace=namespace, kubeconfig=bare_account)
    problem = _blocked_by(process, "RBAC")
    assert f"list databasebackups (namespace {namespace})" in problem
    _assert_said_once(process, problem)
    assert process.healthz() is not None  # alive: a restart would not grant RBAC
    kube_cluster.kubectl(
        "create", "rolebinding", "op", "-n", namespace,
        "--clusterrole=learnops-operator", f"--serviceaccount={namespace}:op",
    )  # fmt: skip
    wait_for(lambda: process.readyz()[0] == 200, 60, "/readyz 200 once granted")
    ns = Namespace(kube_cluster, namespace)
    ns.add_pvc()
    ns.apply(backup("nightly"))
    wait_for(lambda: ns.condition("nightly", "Ready").get("status") == "True", 30, "Ready")


@pytest.fixture
def lease_account(kube_cluster: KubeCluster, namespace: str) -> Iterator[Path]:
    """An account with the operator's ClusterRole and Lease rights in every namespace."""
    name = f"t-lease-{secrets.token_hex(3)}"
    kube_cluster.kubectl("create", "serviceaccount", "op", "-n", namespace)
    kube_cluster.kubectl(
        "create", "clusterrole", name, "--verb=get,create,update,patch",
        "--resource=leases.coordination.k8s.io",
    )  # fmt: skip
    for role in (name, "learnops-operator"):
        kube_cluster.kubectl(
            "create", "clusterrolebinding", f"{name}-{role}", f"--clusterrole={role}",
            f"--serviceaccount={namespace}:op",
        )  # fmt: skip
    try:
        yield kube_cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:op")
    finally:
        bindings = [f"clusterrolebinding/{name}-{role}" for role in (name, "learnops-operator")]
        for obj in [*bindings, f"clusterrole/{name}"]:
            kube_cluster.kubectl("delete", obj, check=False)


def test_a_missing_lease_namespace_is_one_readable_line_and_not_ready(
    operators: Operators, lease_account: Path, operator_kubeconfig: Path
) -> None:
    missing = f"gone-{secrets.token_hex(3)}"
    process = operators.start(
        f"--lease-namespace={missing}", leader_election=True, kubeconfig=lease_account
    )
    problem = _blocked_by(process, "does not exist")
    assert f"Lease namespace {missing!r}" in problem
    _assert_said_once(process, problem)


def test_a_missing_crd_is_one_readable_line_and_the_operator_starts_once_it_is_installed(
    kube_cluster: KubeCluster, namespace: str, operators: Operators, operator_kubeconfig: Path
) -> None:
    kube_cluster.kubectl("delete", "-f", str(CRD), "--wait=true")
    try:
        process = operators.start(namespace=namespace)
        problem = _blocked_by(process, "CRD")
        assert "databasebackups.learnops.io" in problem
        assert "manifests/crds" in problem
        _assert_said_once(process, problem)
    finally:
        kube_cluster.kubectl("apply", "-f", str(CRD))
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=120s",
            "crd/databasebackups.learnops.io",
        )  # fmt: skip
    wait_for(lambda: process.readyz()[0] == 200, 60, "/readyz 200 once the CRD is back")
    ns = Namespace(kube_cluster, namespace)
    ns.add_pvc()
    ns.apply(backup("nightly"))
    wait_for(lambda: ns.condition("nightly", "Ready").get("status") == "True", 30, "Ready")
