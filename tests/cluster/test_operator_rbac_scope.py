"""Least privilege follows the watch scope: one namespace gets namespaced Roles only, all
namespaces the ClusterRole. Checked with `kubectl auth can-i` as the ServiceAccount, for
manifests/ and for the chart, and by running the operator with nothing but the namespaced Roles.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import OPERATOR_SA, Namespace, Operators, backup
from tests.support.ship import CHART, KUBE_VERSION, helm, kustomize


def can_i(kube: KubeCluster, user: str, verb: str, resource: str, *where: str) -> bool:
    proc = kube.kubectl("auth", "can-i", verb, resource, *where, as_user=user, check=False)
    return proc.stdout.strip() == "yes"


@pytest.fixture
def scoped(kube_cluster: KubeCluster) -> Iterator[tuple[str, str, str]]:
    """(operator namespace, watched namespace, another namespace), deleted afterwards."""
    tag = secrets.token_hex(3)
    names = (f"op-{tag}", f"watched-{tag}", f"other-{tag}")
    for name in names:
        kube_cluster.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _namespaced_manifests(op_ns: str, watched: str) -> list[dict[str, Any]]:
    """The operator's RBAC from manifests/namespaced/, moved to this test's namespaces."""
    # the build is cached: copy it, never mutate it
    docs = [
        copy.deepcopy(d)
        for d in kustomize("namespaced")
        if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
        and d["metadata"]["name"].startswith("learnops-operator")
    ]
    for doc in docs:
        meta = doc["metadata"]
        meta["namespace"] = watched if meta["namespace"] == "learnops" else op_ns
        for subject in doc.get("subjects") or ():
            subject["namespace"] = op_ns
    return docs


def _assert_namespaced(kube: KubeCluster, user: str, op_ns: str, watched: str, other: str) -> None:
    inside = ("-n", watched)
    for verb, resource, *sub in [
        ("create", "jobs.batch"),
        ("patch", "cronjobs.batch"),
        ("watch", "databasebackups.learnops.io"),
        ("update", "databasebackups.learnops.io", "--subresource=status"),
        ("list", "pods"),
        ("create", "events"),
        ("patch", "deployments.apps", "--subresource=scale"),
    ]:
        assert can_i(kube, user, verb, resource, *sub, *inside), f"{verb} {resource} in {watched}"
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("delete", "jobs.batch")]:
        assert not can_i(kube, user, verb, resource, *inside), f"{verb} {resource} in {watched}"
    for verb, resource in [
        ("create", "jobs.batch"),
        ("create", "cronjobs.batch"),
        ("list", "pods"),
        ("list", "databasebackups.learnops.io"),
    ]:
        assert not can_i(kube, user, verb, resource, "-n", other), f"{verb} {resource} in {other}"
        assert not can_i(kube, user, verb, resource, "--all-namespaces"), f"{verb} {resource} *"
    assert not can_i(kube, user, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(kube, user, "list", "namespaces")
    assert can_i(kube, user, "create", "leases.coordination.k8s.io", "-n", op_ns)
    assert not can_i(kube, user, "create", "leases.coordination.k8s.io", "-n", watched)
    bindings = json.loads(kube.kubectl("get", "clusterrolebindings", "-o", "json").stdout)
    sa_ns, sa_name = user.split(":")[2:]
    for binding in bindings["items"]:
        for subject in binding.get("subjects") or ():
            assert (subject.get("namespace"), subject.get("name")) != (sa_ns, sa_name), binding


def test_manifests_for_one_namespace_grant_namespaced_roles_only(
    kube_cluster: KubeCluster, scoped: tuple[str, str, str], operator_kubeconfig: Path
) -> None:
    op_ns, watched, other = scoped
    docs = _namespaced_manifests(op_ns, watched)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    user = f"system:serviceaccount:{op_ns}:learnops-operator"
    _assert_namespaced(kube_cluster, user, op_ns, watched, other)


def test_the_chart_for_one_namespace_grants_namespaced_roles_only(
    kube_cluster: KubeCluster, scoped: tuple[str, str, str], operator_kubeconfig: Path
) -> None:
    op_ns, watched, other = scoped
    rendered = helm(
        "template", "lo", str(CHART), "-n", op_ns, "--kube-version", KUBE_VERSION,
        "--set", f"operator.watchNamespace={watched}",
        "-s", "templates/operator/rbac.yaml", "-s", "templates/operator/serviceaccount.yaml",
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert "ClusterRole" not in {d["kind"] for d in docs}
    assert "ClusterRoleBinding" not in {d["kind"] for d in docs}
    for doc in docs:  # what `helm install -n` would do for objects without a namespace
        doc["metadata"].setdefault("namespace", op_ns)
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    user = f"system:serviceaccount:{op_ns}:lo-learnops-operator"
    _assert_namespaced(kube_cluster, user, op_ns, watched, other)


def test_all_namespaces_get_the_cluster_role_still_without_secrets(
    kube_cluster: KubeCluster, scoped: tuple[str, str, str], operator_kubeconfig: Path
) -> None:
    _, watched, other = scoped
    for where in (("-n", watched), ("-n", other), ("--all-namespaces",)):
        assert can_i(kube_cluster, OPERATOR_SA, "create", "jobs.batch", *where)
        assert can_i(kube_cluster, OPERATOR_SA, "watch", "databasebackups.learnops.io", *where)
        assert not can_i(kube_cluster, OPERATOR_SA, "get", "secrets", *where)
        assert not can_i(kube_cluster, OPERATOR_SA, "list", "secrets", *where)


def test_the_operator_works_with_only_the_namespaced_roles(
    kube_cluster: KubeCluster, scoped: tuple[str, str, str], operators: Operators
) -> None:
    op_ns, watched, other = scoped
    docs = _namespaced_manifests(op_ns, watched)
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    kubeconfig = kube_cluster.kubeconfig_for(f"system:serviceaccount:{op_ns}:learnops-operator")
    process = operators.start(
        f"--lease-namespace={op_ns}",
        namespace=watched,
        leader_election=True,
        kubeconfig=kubeconfig,
    )
    mine, theirs = Namespace(kube_cluster, watched), Namespace(kube_cluster, other)
    for ns in (mine, theirs):
        ns.add_pvc()
        ns.apply(backup("nightly"))
    # generous: the start-up checks retry (2 s, 5 s ...) until RBAC has propagated
    wait_for(lambda: mine.condition("nightly", "Ready").get("status") == "True", 90, "Ready")
    assert mine.get("cronjob", "nightly-backup") is not None
    assert wait_for(lambda: process.readyz()[0] == 200, 10, "/readyz 200")
    mine.kubectl("annotate", "dbb", "nightly", "learnops.io/backup-now=t1")
    wait_for(lambda: mine.items("jobs"), 15, "the on-demand Job")
    assert theirs.get("cronjob", "nightly-backup") is None
    assert "status" not in (theirs.get("databasebackup", "nightly") or {})
    logs = process.logs()
    assert "Forbidden" not in logs, logs[-2000:]
