"""`make demo`: the whole system on real pods, as a user would see it, then cleaned up.

A kind cluster (the standard node image where it can be had, else the one assembled locally),
the three images built and loaded with `kind load`, PostgreSQL as a pod seeded with sample
courses, `helm install` into namespaces that enforce `restricted`, a DatabaseBackup triggered
with `learnops.io/backup-now`, the result on the resource and on the volume, and the learning
worker's pods grading the sample submissions.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from tests.harness.conditions import condition
from tests.harness.containers import Engine, EngineUnavailable
from tests.harness.kind import KindCluster
from tests.harness.kube import KubeCluster
from tests.harness.platform import DEMO_IMAGES, Platform, build_image
from tests.harness.podpostgres import NODEPORT, PodPostgres
from tests.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEM_NS = "learnops-system"
APP_NS = "learning"
RELEASE = "learnops"
SUBMISSIONS = 40
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"\n\033[1m==> [{time.monotonic() - T0:5.0f}s] {text}\033[0m", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


def show(cmd: list[str], out: str) -> None:
    print(f"$ {' '.join(cmd)}\n{out.rstrip()}", flush=True)


@contextlib.contextmanager
def progress(what: str, every: float = 10.0) -> Iterator[None]:
    """A line every `every` seconds while a long step runs, so a quiet step never looks hung."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            note(f"... {what}: {time.monotonic() - started:.0f}s")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def main() -> int:
    # SIGTERM cleans up like Ctrl-C: the ExitStack deletes the cluster.
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    work = Path(tempfile.mkdtemp(prefix="learnops-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        engine = _engine(stack)
        kind, kube = start_cluster(stack, work)
        build_and_load(engine, kind)
        pg = start_postgres(kind, kube)
        platform = Platform(kind, kube, pg)
        worker_pw, backup_pw = seed(pg)
        install_chart(kube, pg, worker_pw)
        backup(platform, backup_pw)
        grade(kube, pg, work, worker_pw)
        say("Done; deleting the cluster. Where to look next:")
        print("- docs/runbook.md: install, trigger, restore, alerts, scaling, credentials")
        print("- charts/learnops/values.yaml and manifests/: how this is deployed for real")
        print("- docs/kind.md: the kind cluster, its node image, and what this machine forced")
        print("- make test / make bench: the proof and the figures")
    return 0


# -- cluster and images --------------------------------------------------------
def _engine(stack: contextlib.ExitStack) -> Engine:
    try:
        engine = Engine()
    except EngineUnavailable as exc:
        raise SystemExit(f"the demo needs Docker (kind runs its node in it): {exc}") from exc
    stack.callback(engine.close)
    return engine


def start_cluster(stack: contextlib.ExitStack, work: Path) -> tuple[KindCluster, KubeCluster]:
    say("Starting a kind cluster (one real node: kubelet, containerd, kube-proxy, CoreDNS)")
    kind = KindCluster(work / "kind", name=f"learnops-demo-{secrets.token_hex(2)}")
    stack.callback(_delete, kind)
    with progress("cluster start"):
        kube = kind.create(progress=note)
    stack.callback(kube.close)  # its per-user kubeconfigs (learnops-kubecfg-*)
    note(f"kubeconfig: {kube.kubeconfig}")
    return kind, kube


def _delete(kind: KindCluster) -> None:
    started = time.monotonic()
    kind.delete()
    print(f"cluster {kind.name} deleted in {time.monotonic() - started:.0f}s", flush=True)


def build_and_load(engine: Engine, kind: KindCluster) -> None:
    say("Building the images on the locally made Debian base, then `kind load docker-image`")
    for tag, (dockerfile, context) in DEMO_IMAGES.items():
        started = time.monotonic()
        with progress(f"docker build {tag}"):
            build_image(engine, tag, dockerfile, context)
        note(f"{tag}: {engine.image_size(tag) / 2**20:.0f} MiB ({time.monotonic() - started:.0f}s)")
    with progress("kind load"):
        kind.load(*DEMO_IMAGES)
    note(f"loaded {len(DEMO_IMAGES)} images into node {kind.node}")


# -- PostgreSQL ----------------------------------------------------------------
def start_postgres(kind: KindCluster, kube: KubeCluster) -> PodPostgres:
    say("PostgreSQL as a pod: a StatefulSet with its data on a local-path PVC, behind a Service")
    with progress("CoreDNS, storage and PostgreSQL"):
        kind.wait_system(kube, progress=note)
        pg = PodPostgres(kube, kind.host_ports[NODEPORT]).start()
    show(
        ["kubectl", "get", "pods,pvc,svc", "-n", "learnops-db"],
        kube.kubectl("get", "pods,pvc,svc", "-n", "learnops-db").stdout,
    )
    return pg


def seed(pg: PodPostgres) -> tuple[str, str]:
    say("Seeding the database 'learning' with sample courses, tasks and submissions")
    worker_pw, backup_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pg.create_user("learnops_worker", worker_pw)
    pg.create_user("learnops_backup", backup_pw)
    app = pg.create_database("learning", owner="learnops_worker")
    with progress("pgbench data"):
        pg.fill_mb("learning", 15)  # some bulk next to the sample rows, so the dump has weight
    with pg.connect(app) as c:
        c.execute("GRANT pg_read_all_data TO learnops_backup")
        row = c.execute("SELECT count(*) FROM submissions").fetchone()
    size = pg.database_size("learning") / 2**20
    note(f"database 'learning': {size:.0f} MiB, {row[0] if row else 0} submissions")
    return worker_pw, backup_pw


# -- the chart -----------------------------------------------------------------
def install_chart(kube: KubeCluster, pg: PodPostgres, worker_pw: str) -> None:
    say("helm install learnops (restricted Pod Security enforced on both namespaces)")
    for ns in (SYSTEM_NS, APP_NS):
        kube.kubectl("create", "namespace", ns)
        kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    conn = pg.in_cluster(pg.admin.with_db("learning"))
    dsn = f"postgresql://learnops_worker:{worker_pw}@{conn.host}:{conn.port}/learning"
    # The worker's database URL goes in as a file, never on a command line.
    kube.kubectl(
        "create", "secret", "generic", "learnops-database", "-n", SYSTEM_NS,
        "--from-file=DATABASE_URL=/dev/stdin", input=dsn,
    )  # fmt: skip
    helm = ["helm", "install", RELEASE, str(REPO / "charts/learnops"), "-n", SYSTEM_NS,
            f"--kubeconfig={kube.kubeconfig}", "--wait", "--timeout=5m"]  # fmt: skip
    with progress("helm install --wait"):
        done = subprocess.run(helm, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"helm install failed:\n{done.stderr}")
    show(helm[:5], done.stdout.split("NOTES:")[0])
    get = ["kubectl", "get", "pods", "-n", SYSTEM_NS, "-o", "wide"]
    show(get, kube.kubectl(*get[1:]).stdout)


# -- backup --------------------------------------------------------------------
def backup(platform: Platform, backup_pw: str) -> None:
    kube, pg = platform.kube, platform.pg
    say("Declaring a DatabaseBackup and triggering it now (learnops.io/backup-now)")
    conn = pg.in_cluster(pg.admin.with_db("learning"))
    kube.kubectl(
        "create", "secret", "generic", "learning-db-pgpass", "-n", APP_NS,
        "--from-file=pgpass=/dev/stdin",
        input=f"{conn.host}:{conn.port}:learning:learnops_backup:{backup_pw}\n",
    )  # fmt: skip
    manifest = f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: backups, namespace: {APP_NS}}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: learnops.io/v1alpha1
kind: DatabaseBackup
metadata: {{name: learning-nightly, namespace: {APP_NS}}}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlin
  database:
    host: {conn.host}
    port: {conn.port}
    dbname: learning
    user: learnops_backup
    sslMode: disable
    pgpassSecretRef: {{name: learning-db-pgpass, key: pgpass}}
  storage: {{persistentVolumeClaim: {{claimName: backups}}, subPath: nightly}}
  format: custom
  compression: {{algorithm: gzip, level: 1}}
  timeoutSeconds: 600
"""
    print(manifest)
    kube.kubectl("apply", "-f", "-", input=manifest)
    wait_for(lambda: _condition(kube, "Ready") == "True", 60, "the backup to be Ready")
    kube.kubectl(
        "annotate", "dbb", "learning-nightly", "-n", APP_NS, "learnops.io/backup-now=demo-1"
    )
    note("annotated learnops.io/backup-now=demo-1; the dump pod runs on the node")
    with progress("the backup pod"):
        wait_for(
            lambda: _condition(kube, "LastBackupSucceeded") in {"True", "False"},
            240,
            "the backup's result",
        )
    get = ["kubectl", "get", "databasebackups", "-n", APP_NS]
    show(get, kube.kubectl(*get[1:]).stdout)
    pods = ["kubectl", "get", "pods", "-n", APP_NS]
    show(pods, kube.kubectl(*pods[1:]).stdout)
    status: dict[str, Any] = json.loads(
        kube.kubectl(
            "get", "dbb", "learning-nightly", "-n", APP_NS, "-o", "jsonpath={.status}"
        ).stdout
    )
    keys = ("lastSuccessfulBackup", "lastFailedBackup", "consecutiveFailures")
    print(json.dumps({k: status.get(k) for k in keys}, indent=2))
    path = platform.volume_path(APP_NS, "backups")
    say(f"The volume on the node ({platform.kind.node}:{path})")
    show(["ls", "-lR", path], platform.kind.node_exec("ls", "-lR", path).stdout)
    files = platform.volume_files(APP_NS, "backups")
    if "nightly/learning-nightly.latest.json" in files:
        print(files["nightly/learning-nightly.latest.json"].decode())


# -- worker --------------------------------------------------------------------
def grade(kube: KubeCluster, pg: PodPostgres, work: Path, worker_pw: str) -> None:
    say(f"The learning worker's pods grade {SUBMISSIONS} sample submissions")
    url_file = work / "worker-url"
    url_file.write_text(f"postgresql://learnops_worker:{worker_pw}@{pg.host}:{pg.port}/learning")
    url_file.chmod(0o600)
    # Only the CLI's enqueue/stats run here (against the NodePort); the work happens in the pods.
    env = {**_base_env(), "DATABASE_URL_FILE": str(url_file), "WORKER_HTTP_PORT": "0"}
    worker = str(Path(sys.executable).parent / "learning-worker")
    with pg.connect(pg.admin.with_db("learning")) as c:
        rows = c.execute(
            "SELECT s.id, t.prompt, t.rubric, s.answer FROM submissions s"
            " JOIN tasks t ON t.id = s.task_id ORDER BY s.id LIMIT %s",
            (SUBMISSIONS,),
        ).fetchall()
    for _sid, prompt, rubric, answer in rows:
        payload = json.dumps({"task_prompt": prompt, "rubric": rubric, "answer": answer})
        subprocess.run(
            [worker, "enqueue", "--kind", "feedback", "--payload", payload],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    note(f"enqueued {len(rows)} feedback jobs")
    with progress("the queue draining"):
        wait_for(lambda: _all_done(pg), 180, "the queue to drain", every=1)
    stats = subprocess.run([worker, "stats"], env=env, capture_output=True, text=True, check=True)
    show(["learning-worker", "stats"], stats.stdout)
    with pg.connect(pg.admin.with_db("learning")) as c:
        sample = c.execute(
            "SELECT id, result FROM learnops_jobs WHERE status = 'succeeded' ORDER BY id LIMIT 1"
        ).fetchall()
    for job_id, result in sample:
        print(f"job {job_id} feedback: {json.dumps(result, indent=2)[:800]}")
    pod = _first_pod(kube, "learning-worker")
    logs = ["kubectl", "logs", "-n", SYSTEM_NS, pod, "-c", "worker", "--tail=5"]
    show(logs, kube.kubectl(*logs[1:], check=False).stdout)
    say(f"Worker metrics (excerpt), through the API server's proxy to pod {pod}")
    raw = kube.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{SYSTEM_NS}/pods/{pod}:8080/proxy/metrics",
        check=False,
    ).stdout  # fmt: skip
    print(
        "\n".join(
            line
            for line in raw.splitlines()
            if line.startswith("learnops_worker") and "_bucket" not in line
        )[:3000]
    )


def _all_done(pg: PodPostgres) -> bool:
    with pg.connect(pg.admin.with_db("learning")) as c:
        row = c.execute(
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) FROM learnops_jobs"
        ).fetchone()
    return row is not None and row[0] == 0


# -- helpers -------------------------------------------------------------------
def _first_pod(kube: KubeCluster, component: str) -> str:
    return kube.kubectl(
        "get", "pods", "-n", SYSTEM_NS, "-l", f"app.kubernetes.io/component={component}",
        "-o", "jsonpath={.items[0].metadata.name}",
    ).stdout  # fmt: skip


def _condition(kube: KubeCluster, kind: str) -> str:
    got = kube.read("dbb", "learning-nightly", namespace=APP_NS)
    if got is None:
        return ""
    return str(condition(got.get("status"), kind).get("status", ""))


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


if __name__ == "__main__":
    sys.exit(main())
