"""The backup pod is the operator's design: admission refuses what CEL can see, the operator
(running as its own ServiceAccount) refuses the rest with Ready=False, and what runs is fixed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess, Operators, backup

DIGEST = "sha256:" + "d" * 64


def _admit(ns: Namespace, manifest: dict[str, Any]) -> tuple[bool, str]:
    proc = ns.cluster.kubectl(
        "apply", "--dry-run=server", "-n", ns.name, "-f", "-", input=json.dumps(manifest),
        check=False,
    )  # fmt: skip
    return proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"serviceAccountName": "default"}, "serviceAccountName is not supported"),
        (
            {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
                ]
            },
            "must not tolerate taints in the kubernetes.io",
        ),
        ({"tolerations": [{"operator": "Exists"}]}, "key"),
        (
            {
                "podAnnotations": {
                    "container.apparmor.security.beta.kubernetes.io/dump": "unconfined"
                }
            },
            "podAnnotations must not use keys",
        ),
        ({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}, "control-plane"),
        ({"priorityClassName": "system-cluster-critical"}, "reserved for cluster components"),
        ({"resources": {"limits": {"hugepages-2Mi": "1Gi"}}}, "only cpu, memory"),
        ({"image": "evil image"}, "spec.image"),
    ],
)
def test_admission_refuses_pod_fields_that_are_not_the_authors(
    backup_ns: Namespace, spec: dict[str, Any], message: str
) -> None:
    admitted, error = _admit(backup_ns, backup("hostile", **spec))
    assert not admitted
    assert message in error


def _ready(ns: Namespace, name: str) -> dict[str, Any]:
    cond: dict[str, Any] = wait_for(
        lambda: (c := ns.condition(name, "Ready")).get("status") in ("True", "False") and c,
        20,
        f"Ready of {name}",
    )
    return cond


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"image": "evil.example/dump:latest"}, "ImageNotAllowed"),
        ({"image": "mirror.example/platformer/dump:1"}, "ImageNotAllowed"),
        ({"priorityClassName": "high"}, "PriorityClassNotAllowed"),
        ({"resources": {"limits": {"memory": "64Gi"}}}, "ResourcesNotAllowed"),
        ({"affinity": {"nodeName": "control-plane-1"}}, "SchedulingNotAllowed"),
    ],
)
def test_the_operator_refuses_what_admission_cannot_know(
    backup_ns: Namespace, operators: Operators, spec: dict[str, Any], reason: str
) -> None:
    operators.start(
        "--allowed-dump-images=mirror.example/platform/", "--dump-max-resources=memory=8Gi"
    )
    backup_ns.apply(backup("hostile", **spec))
    cond = _ready(backup_ns, "hostile")
    assert (cond["status"], cond["reason"]) == ("False", reason)
    assert backup_ns.get("cronjob", "hostile-backup") is None
    assert [e["type"] for e in backup_ns.events(reason, at_least=1)] == ["Warning"]
    # an on-demand run of a refused spec starts nothing either
    backup_ns.kubectl("annotate", "dbb", "hostile", "learnops.io/backup-now=t1")
    time.sleep(3)  # a Job would appear within a second (tests/cluster/test_operator_runs.py)
    assert backup_ns.items("jobs") == []


def _pod_spec(ns: Namespace, name: str) -> dict[str, Any]:
    cj = wait_for(lambda: ns.get("cronjob", f"{name}-backup"), 20, "the CronJob")
    spec: dict[str, Any] = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def test_an_allow_listed_digest_and_pull_policy_reach_the_pod_and_the_rest_is_fixed(
    backup_ns: Namespace, operators: Operators
) -> None:
    operators.start(f"--allowed-dump-images={DIGEST}", "--allowed-priority-classes=backup-low")
    image = f"mirror.example/dump@{DIGEST}"
    backup_ns.apply(
        backup(
            "pinned",
            image=image,
            imagePullPolicy="Always",
            priorityClassName="backup-low",
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "backup"}],
            podAnnotations={"team.example/owner": "a"},
        )
    )
    assert _ready(backup_ns, "pinned")["status"] == "True"
    spec = _pod_spec(backup_ns, "pinned")
    (container,) = spec["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (image, "Always")
    assert spec["priorityClassName"] == "backup-low"
    assert spec["serviceAccountName"] == "default"
    assert spec["automountServiceAccountToken"] is False
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    # our own apply echoed back is no drift (false host fields are stored as absent)
    assert backup_ns.events("DriftReverted") == []


def test_edits_of_the_cronjob_that_widen_the_pod_are_reverted(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(backup("nightly"))
    _pod_spec(backup_ns, "nightly")
    widen = {
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "serviceAccountName": "admin",
                            "hostNetwork": True,
                            "automountServiceAccountToken": True,
                        }
                    }
                }
            }
        }
    }
    backup_ns.kubectl("patch", "cronjob", "nightly-backup", "--type=merge", "-p", json.dumps(widen))
    spec = wait_for(
        lambda: (s := _pod_spec(backup_ns, "nightly")).get("serviceAccountName") == "default" and s,
        20,
        "the pod's fields restored",
    )
    assert spec.get("hostNetwork", False) is False  # the API stores a false as absent
    assert spec["automountServiceAccountToken"] is False


def test_only_the_url_keys_of_a_shared_secret_reach_the_pod(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    manifest = backup("url")
    manifest["spec"]["database"] = {"urlSecretRef": {"name": "shared"}}
    backup_ns.apply(manifest)
    volumes = _pod_spec(backup_ns, "url")["volumes"]
    (secret,) = [v["secret"] for v in volumes if "secret" in v]
    assert {i["key"] for i in secret["items"]} == {
        "SESSION_DATABASE_URL",
        "BACKUP_DATABASE_URL",
        "DATABASE_URL",
    }
