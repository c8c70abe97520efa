"""The learning worker as pods of the chart: a pod force-deleted in the middle of a job loses
no job and completes none twice, and the operator's replica ceiling holds on real pods."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.harness.kube import KubeCluster
from tests.harness.platform import VERSION
from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import SIDE_TABLES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "learnops"
WORKER = "app.kubernetes.io/component=learning-worker"
JOBS = 12
JOB_SECONDS = 8
# The pod that runs this one is the victim: far more time left than a loaded machine takes to
# deliver the delete, so the kubelet's kill (2 s after SIGTERM) always lands mid-job.
LONG_JOB_SECONDS = 30


def _helm(kube: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["helm", *args, f"--kubeconfig={kube.kubeconfig}"],
        capture_output=True, text=True, check=False, timeout=400,
    )  # fmt: skip


def _cli_env(url_file: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL_FILE": str(url_file), "WORKER_HTTP_PORT": "0"}


@pytest.fixture
def worker_db(pg_cluster: PodPostgres, namespace: str, tmp_path: Path) -> tuple[Conn, Conn, Path]:
    """A migrated database with the execution-counting side tables: (superuser connection, the
    worker role's connection, a file holding the role's URL for the host's CLI)."""
    name = namespace.replace("-", "_")
    role = pg_cluster.create_user(f"w_{name}", "worker-e2e-pw")
    db = pg_cluster.create_database(f"db_{name}", owner=role.user)
    url_file = tmp_path / "url"
    url_file.write_text(role.with_db(db.dbname).url())
    cli = _cli_env(url_file)
    subprocess.run(["learning-worker", "migrate"], env=cli, check=True, capture_output=True)
    with pg_cluster.connect(db) as c:
        c.execute(SIDE_TABLES)
        c.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role.user}"')
    return db, role.with_db(db.dbname), url_file


@pytest.fixture
def installed(
    kube_cluster: KubeCluster,
    pg_cluster: PodPostgres,
    namespace: str,
    operator_kubeconfig: Path,
    worker_db: tuple[Conn, Conn, Path],
) -> Iterator[str]:
    """The chart in `namespace` (restricted): its operator, and two workers with test handlers."""
    _, role, _ = worker_db
    url = pg_cluster.in_cluster(role).url()
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    secret = kube_cluster.kubectl(
        "create", "secret", "generic", "learnops-database", "-n", namespace,
        "--from-file=DATABASE_URL=/dev/stdin", "--dry-run=client", "-o", "yaml", input=url,
    ).stdout  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", input=secret)
    done = _helm(
        kube_cluster, "install", "w", str(CHART), "-n", namespace, "--wait", "--timeout", "4m",
        "--set", "crds.install=false", "--set", f"operator.watchNamespace={namespace}",
        "--set", "worker.replicas=2", "--set", f"worker.image.tag={VERSION}-e2e",
        "--set", "worker.handlers=record=worker_handlers:record",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield "w"
    _helm(kube_cluster, "uninstall", "w", "-n", namespace, "--wait", "--timeout", "2m")


def _pods(kube: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    """The worker pods that are not being deleted."""
    listed = kube.read("pods", namespace=namespace, selector=WORKER)
    assert listed is not None
    items: list[dict[str, Any]] = listed["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return bool(statuses) and all(s["ready"] for s in statuses)


def test_a_worker_pod_force_deleted_mid_job_loses_no_job_and_completes_none_twice(
    kube_cluster: KubeCluster,
    pg_cluster: PodPostgres,
    namespace: str,
    worker_db: tuple[Conn, Conn, Path],
    installed: str,
) -> None:
    db, _, url_file = worker_db
    for n in range(JOBS):
        payload = json.dumps({"sleep": LONG_JOB_SECONDS if n == 0 else JOB_SECONDS})
        subprocess.run(
            ["learning-worker", "enqueue", "--kind", "record", "--payload", payload],
            env=_cli_env(url_file), check=True, capture_output=True,
        )  # fmt: skip

    def a_pod_mid_job() -> tuple[str, int] | None:
        with pg_cluster.connect(db) as c:
            row = c.execute(
                "SELECT worker_id, id FROM learnops_jobs WHERE status = 'running' "
                "AND started_at < now() - interval '1 second' "
                "AND (payload->>'sleep')::int = %s",
                (LONG_JOB_SECONDS,),
            ).fetchone()
        # the chart sets WORKER_ID to the pod's name
        return (str(row[0]), int(row[1])) if row else None  # type: ignore[call-overload]

    victim, job_id = wait_for(a_pod_mid_job, 120, "a worker pod in the middle of a job", every=0.5)
    kube_cluster.kubectl("delete", "pod", victim, "-n", namespace, "--grace-period=0", "--force")

    def all_done() -> bool:
        with pg_cluster.connect(db) as c:
            row = c.execute(
                "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM learnops_jobs"
            ).fetchone()
        return row is not None and row[0] == row[1] == JOBS

    wait_for(all_done, 240, f"all {JOBS} jobs to succeed", every=1)
    with pg_cluster.connect(db) as c:
        completions = c.execute(
            "SELECT job_id, count(*) FROM worker_test_completions GROUP BY job_id"
        ).fetchall()
        reruns = c.execute(
            "SELECT count(*) FROM (SELECT job_id FROM worker_test_executions GROUP BY job_id "
            "HAVING count(*) > 1) r"
        ).fetchone()
        interrupted = c.execute(
            "SELECT attempts, worker_id FROM learnops_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert len(completions) == JOBS
    assert all(n == 1 for _, n in completions), completions
    # the job the deleted pod was running was run again, by another pod
    assert reruns is not None
    assert cast(int, reruns[0]) >= 1
    assert interrupted is not None
    assert cast(int, interrupted[0]) >= 2
    assert interrupted[1] != victim
    # the Deployment replaced the pod; the new one is Ready
    wait_for(
        lambda: sum(map(_ready, _pods(kube_cluster, namespace))) == 2,
        120,
        "two Ready worker pods again",
    )


def test_scaling_the_workers_past_four_is_clamped_and_at_most_four_pods_run(
    kube_cluster: KubeCluster, namespace: str, installed: str
) -> None:
    deploy = kube_cluster.kubectl(
        "get", "deployment", "-n", namespace, "-l", WORKER,
        "-o", "jsonpath={.items[0].metadata.name}",
    ).stdout  # fmt: skip
    kube_cluster.kubectl("scale", "deployment", deploy, "-n", namespace, "--replicas=10")

    def replicas() -> int:
        got = kube_cluster.read("deployment", deploy, namespace=namespace)
        return int(got["spec"]["replicas"]) if got else -1

    wait_for(lambda: replicas() == 4, 30, "the operator pod to clamp replicas to 4")
    kube_cluster.kubectl(
        "rollout", "status", f"deployment/{deploy}", "-n", namespace, "--timeout=180s"
    )
    wait_for(lambda: len(_pods(kube_cluster, namespace)) == 4, 120, "exactly four worker pods")
    assert sum(map(_ready, _pods(kube_cluster, namespace))) == 4
    events = json.loads(
        kube_cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )["items"]
    clamped = [e for e in events if e.get("reason") == "ReplicasClamped"]
    assert clamped
    assert clamped[0]["type"] == "Warning"
