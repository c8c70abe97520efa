"""500 DatabaseBackups at once: how long until every CronJob exists and every resource is Ready.

Compared, in the same run, with creating the same 500 CronJobs directly with the client. Also
the create->CronJob latency per resource (p50/p99) and the operator's RSS afterwards.
Figures go to stdout (`make bench` runs with -s); nothing is asserted beyond completion.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from learnops_operator import builders
from learnops_operator.spec import Owner, parse

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Operators, backup

COUNT = 500
CLIENT_THREADS = 16


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _baseline(api: client.ApiClient, namespace: str) -> float:
    """The same CronJobs the operator would build, created directly (no owner to GC them)."""
    batch = client.BatchV1Api(api)
    spec = parse(backup("x")["spec"])

    def create(i: int) -> None:
        body = builders.cronjob(Owner(namespace, f"direct{i}", "uid"), spec, "learnops/dump:bench")
        del body["metadata"]["ownerReferences"]
        batch.create_namespaced_cron_job(namespace, body)

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, range(COUNT)))
    return time.monotonic() - start


class _CronJobWatch(threading.Thread):
    """Records when each CronJob first appears in the namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.stopper = watch.Watch()

    def run(self) -> None:
        # stopping the watch may cut the stream mid-chunk: that is the end, not an error
        with contextlib.suppress(Exception):
            for event in self.stopper.stream(
                self.batch.list_namespaced_cron_job, self.namespace, timeout_seconds=600
            ):
                self.seen.setdefault(event["object"].metadata.name, time.monotonic())


def _namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def _ready_count(custom: client.CustomObjectsApi, namespace: str) -> int:
    items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
        "learnops.io", "v1alpha1", namespace, "databasebackups"
    )["items"]
    return sum(1 for b in items if condition(b.get("status"), "Ready").get("status") == "True")


def test_500_backups_reconcile_next_to_500_direct_cronjobs(
    kube_cluster: KubeCluster, namespace: str, operators: Operators
) -> None:
    api = kube_cluster.api()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "backups"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    direct_ns = f"{namespace}-direct"
    core.create_namespace({"metadata": {"name": direct_ns}})
    try:
        direct = _baseline(api, direct_ns)
    finally:
        core.delete_namespace(direct_ns)
    # Deleting 500 CronJobs loads the API server (and the operator's cluster-wide CronJob watch
    # sees them): that must be over before the operator's figures are taken.
    wait_for(
        lambda: _namespace_gone(core, direct_ns), 300, f"namespace {direct_ns} gone", every=0.5
    )

    # the production sweep interval, not the tests' 1 s
    op = operators.start("--sweep-interval=30")
    # the clock starts once kopf is watching (/readyz), as it did when liveness meant that
    wait_for(lambda: op.readyz()[0] == 200, 120, "the operator ready", every=0.2)
    watcher = _CronJobWatch(api, namespace)
    watcher.start()
    created: dict[str, float] = {}

    def create(i: int) -> None:
        body = backup(f"db{i}")
        created[f"db{i}-backup"] = time.monotonic()
        custom.create_namespaced_custom_object(
            "learnops.io", "v1alpha1", namespace, "databasebackups", body
        )

    cpu_before = _cpu_seconds(op.proc.pid)
    start = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, range(COUNT)))
    submitted = time.monotonic() - start
    wait_for(lambda: len(watcher.seen) >= COUNT, 300, "all CronJobs", every=0.2)
    all_cronjobs = max(watcher.seen.values()) - start
    wait_for(lambda: _ready_count(custom, namespace) >= COUNT, 300, "all Ready", every=0.1)
    all_ready = time.monotonic() - start
    watcher.stopper.stop()
    latencies = [watcher.seen[name] - t for name, t in created.items()]
    rss = _rss_mib(op.proc.pid)
    cpu = _cpu_seconds(op.proc.pid) - cpu_before
    print(
        f"\n[operator bench] {COUNT} DatabaseBackups, client threads {CLIENT_THREADS}\n"
        f"  direct: {COUNT} CronJobs created by the client       {direct:7.2f} s\n"
        f"  operator: CRs submitted                             {submitted:7.2f} s\n"
        f"  operator: all CronJobs exist                        {all_cronjobs:7.2f} s"
        f"  ({all_cronjobs / direct:.2f}x direct)\n"
        f"  operator: all Ready                                 {all_ready:7.2f} s"
        f"  ({all_ready / direct:.2f}x direct)\n"
        f"  after the last create returned: all CronJobs {all_cronjobs - submitted:.2f} s, "
        f"all Ready {all_ready - submitted:.2f} s (Ready polled every 0.1 s)\n"
        f"  create->CronJob latency p50 {_percentile(latencies, 0.5):.2f} s, "
        f"p99 {_percentile(latencies, 0.99):.2f} s, mean {statistics.mean(latencies):.2f} s\n"
        f"  operator CPU while reconciling {cpu:.1f} s, RSS afterwards {rss:.1f} MiB"
    )
    assert len(watcher.seen) == COUNT
