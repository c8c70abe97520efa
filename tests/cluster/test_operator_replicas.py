"""Two replicas never both act (Lease election), and a killed operator converges on restart."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from typing import Any

from tests.harness.conditions import condition
from tests.harness.wait import wait_for
from tests.support.operator import (
    OPERATOR_NAMESPACE,
    Namespace,
    OperatorProcess,
    Operators,
    backup,
)


def _holder(ns: Namespace) -> str | None:
    lease = ns.cluster.read("lease", "learnops-operator", namespace=OPERATOR_NAMESPACE)
    if lease is None:
        return None
    holder: str | None = lease["spec"].get("holderIdentity")
    return holder


def _all_ready(ns: Namespace, count: int) -> bool:
    items = ns.items("databasebackups")
    ready = [b for b in items if condition(b.get("status"), "Ready").get("status") == "True"]
    return len(ready) == count


def _manifests(names: list[str], token: str | None = None) -> str:
    items: list[dict[str, Any]] = []
    for name in names:
        item = backup(name)
        if token:
            item["metadata"]["annotations"] = {"learnops.io/backup-now": token}
        items.append(item)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _leader(
    a: OperatorProcess, b: OperatorProcess, holder: str
) -> tuple[OperatorProcess, OperatorProcess]:
    return (a, b) if holder == "replica-a" else (b, a)


def test_two_replicas_elect_one_leader_and_never_duplicate_work(
    backup_ns: Namespace, operators: Operators
) -> None:
    a = operators.start(leader_election=True, identity="replica-a")
    b = operators.start(leader_election=True, identity="replica-b")
    holder = wait_for(
        lambda: _holder(backup_ns) in ("replica-a", "replica-b") and _holder(backup_ns),
        20,
        "a leader",
    )
    leader, follower = _leader(a, b, holder)
    assert follower.healthz() == {"role": "follower"}

    names = [f"db{i}" for i in range(8)]
    backup_ns.kubectl("apply", "-f", "-", input=_manifests(names, token="once"))
    wait_for(lambda: _all_ready(backup_ns, len(names)), 40, "all backups Ready")
    wait_for(lambda: len(backup_ns.items("jobs")) >= len(names), 20, "the on-demand Jobs")
    time.sleep(2)  # give a would-be second actor time to duplicate
    jobs = Counter(
        j["metadata"]["labels"]["app.kubernetes.io/instance"] for j in backup_ns.items("jobs")
    )
    assert jobs == Counter(names)
    started = Counter(
        e["involvedObject"]["name"] for e in backup_ns.events("BackupStarted", at_least=len(names))
    )
    assert started == Counter(names)
    assert '"event": "backup.reconciled"' not in follower.logs()

    # the leader dies without releasing the Lease: the follower takes over after it expires
    leader.stop(signal.SIGKILL)
    wait_for(lambda: _holder(backup_ns) == follower.log.stem, 20, "the follower to take over")
    backup_ns.kubectl("apply", "-f", "-", input=_manifests(["late"]))
    wait_for(lambda: _all_ready(backup_ns, len(names) + 1), 30, "the new leader to reconcile")
    assert len(backup_ns.items("cronjobs")) == len(names) + 1


def test_a_gracefully_stopped_leader_hands_over_at_once(
    backup_ns: Namespace, operators: Operators
) -> None:
    # a 30 s Lease (the follower retries every 6 s): taking over within 25 s of the leader's
    # stop can only be a release, never an expiry, however slow the machine
    lease = "--lease-duration=30"
    a = operators.start(lease, leader_election=True, identity="replica-a")
    wait_for(lambda: _holder(backup_ns) == "replica-a", 20, "replica-a to lead")
    b = operators.start(lease, leader_election=True, identity="replica-b")
    assert b.healthz() == {"role": "follower"}
    assert a.stop() == 0
    wait_for(lambda: _holder(backup_ns) == "replica-b", 25, "replica-b to lead (released Lease)")


def test_an_operator_killed_mid_reconcile_converges_after_restart(
    backup_ns: Namespace, operators: Operators
) -> None:
    names = [f"r{i}" for i in range(15)]
    first = operators.start(identity="first")
    backup_ns.kubectl("apply", "-f", "-", input=_manifests(names, token="t1"))
    time.sleep(0.5)  # somewhere in the middle of reconciling 15 resources
    first.stop(signal.SIGKILL)
    operators.start(identity="second")
    wait_for(lambda: _all_ready(backup_ns, len(names)), 60, "all backups Ready after restart")
    wait_for(lambda: len(backup_ns.items("jobs")) >= len(names), 20, "all on-demand Jobs")
    time.sleep(1)
    cronjobs = Counter(
        c["metadata"]["labels"]["app.kubernetes.io/instance"] for c in backup_ns.items("cronjobs")
    )
    assert cronjobs == Counter(names)
    jobs = Counter(
        j["metadata"]["labels"]["app.kubernetes.io/instance"] for j in backup_ns.items("jobs")
    )
    assert jobs == Counter(names)
    # a Job the killed replica created may never get its Event; none may get two
    started = Counter(e["involvedObject"]["name"] for e in backup_ns.events("BackupStarted"))
    assert max(started.values()) == 1
