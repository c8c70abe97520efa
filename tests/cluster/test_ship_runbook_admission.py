"""The manifests in docs/runbook.md are accepted by a real API server (CEL rules and Pod
Security admission included), in a namespace other than the one they name."""

from __future__ import annotations

import json

import yaml

from tests.harness.kube import KubeCluster
from tests.support.ship import CRD_SOURCE, MANIFESTS, yaml_objects

CRD = "databasebackups.learnops.io"
RESTORE_CRD = MANIFESTS / "crds" / "learnops.io_databaserestores.yaml"


def in_namespace(kind: str, namespace: str) -> str:
    docs = [d for d in yaml_objects() if d["kind"] == kind]
    assert docs
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(docs)


def test_the_runbook_backup_and_its_pvc_are_accepted(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", str(CRD_SOURCE))
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=in_namespace("PersistentVolumeClaim", namespace)
    )
    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=in_namespace("DatabaseBackup", namespace)
    )
    out = kube_cluster.kubectl(
        "get", "databasebackup", "learnops-nightly", "-n", namespace, "-o", "json"
    ).stdout
    assert json.loads(out)["spec"]["schedule"] == "30 2 * * *"


def test_the_runbook_database_restore_is_accepted(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", str(RESTORE_CRD))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/databaserestores.learnops.io", "--timeout=60s"
    )
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=in_namespace("DatabaseRestore", namespace),
    ).stdout  # fmt: skip
    admitted = json.loads(out)
    restores = admitted.get("items", [admitted])  # a List when the runbook has several
    assert len(restores) == len([d for d in yaml_objects() if d["kind"] == "DatabaseRestore"])
    assert {r["spec"]["target"]["policy"] for r in restores} == {"create"}


def test_the_runbook_restore_job_passes_restricted_admission(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    # Admission enforces on pods; for a Job's pod template it can only warn, so warn is on too
    # and any warning fails the test.
    kube_cluster.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=in_namespace("Job", namespace), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr
