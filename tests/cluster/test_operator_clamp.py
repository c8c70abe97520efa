"""The learning worker's replica ceiling holds against `kubectl scale` and over-eager HPAs."""

from __future__ import annotations

from tests.harness.wait import wait_for
from tests.support.operator import Namespace, OperatorProcess

WORKER = "app.kubernetes.io/component=learning-worker"


def _worker(ns: Namespace, name: str = "learning-worker", replicas: int = 2) -> None:
    ns.kubectl(
        "create",
        "deployment",
        name,
        "--image=learnops/learning-worker:test",
        f"--replicas={replicas}",
    )
    ns.kubectl("label", "deployment", name, WORKER)


def _replicas(ns: Namespace, name: str) -> int:
    return int(((ns.get("deployment", name) or {}).get("spec") or {}).get("replicas", -1))


def test_scaling_a_worker_past_four_is_reverted_with_a_warning(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _worker(backup_ns)
    backup_ns.kubectl("scale", "deployment", "learning-worker", "--replicas=10")
    wait_for(lambda: _replicas(backup_ns, "learning-worker") == 4, 10, "replicas back at 4")
    events = backup_ns.events("ReplicasClamped", at_least=1)
    assert events
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "learning-worker"
    assert "capped at 4" in events[0]["message"]
    backup_ns.kubectl("scale", "deployment", "learning-worker", "--replicas=3")
    wait_for(lambda: _replicas(backup_ns, "learning-worker") == 3, 5, "3 replicas kept")
    assert "learnops_operator_worker_clamps_total" in operator.metrics()


def test_unlabelled_deployments_are_left_alone(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.kubectl("create", "deployment", "web", "--image=example/web:1", "--replicas=6")
    _worker(backup_ns, "learning-worker", 1)
    backup_ns.kubectl("scale", "deployment", "learning-worker", "--replicas=9")
    wait_for(lambda: _replicas(backup_ns, "learning-worker") == 4, 10, "the worker clamped")
    assert _replicas(backup_ns, "web") == 6


def test_an_hpa_allowing_more_than_four_workers_is_clamped(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    _worker(backup_ns)
    backup_ns.kubectl("autoscale", "deployment", "learning-worker", "--min=2", "--max=12")

    def max_replicas() -> int:
        hpa = backup_ns.get("hpa", "learning-worker") or {}
        return int(hpa.get("spec", {}).get("maxReplicas", -1))

    wait_for(lambda: max_replicas() == 4, 10, "maxReplicas clamped to 4")
    events = backup_ns.events("MaxReplicasClamped", at_least=1)
    assert [e["type"] for e in events] == ["Warning"]
    assert events[0]["involvedObject"]["kind"] == "HorizontalPodAutoscaler"


def test_an_hpa_created_before_its_worker_is_clamped_when_the_worker_appears(
    backup_ns: Namespace, operator: OperatorProcess
) -> None:
    backup_ns.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "early"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "learning-worker",
                },
                "minReplicas": 1,
                "maxReplicas": 20,
            },
        }
    )
    _worker(backup_ns)
    wait_for(
        lambda: (backup_ns.get("hpa", "early") or {}).get("spec", {}).get("maxReplicas") == 4,
        10,
        "the early HPA clamped",
    )
