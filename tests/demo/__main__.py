"""`make demo`: throwaway PostgreSQL + cluster, the chart, one backup and a worker batch.

Where no node can run pods (our local control plane), the demo says so and:
- runs the operator and the learning worker as local processes with exactly the configuration
  their Deployments give their pods (env, args, Secret files), the operator as its own RBAC-bound
  ServiceAccount;
- runs the dump pod for real in Docker through the kubelet stand-in, so the dump's result reaches
  the operator the way a finished pod's does (termination message on the pod status).
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
import urllib.request
from pathlib import Path

from tests.demo.podconfig import from_deployment
from tests.harness.containers import Engine, EngineUnavailable
from tests.harness.dumpimage import build_dump_image
from tests.harness.kube import KubeCluster, start_local
from tests.harness.net import free_port
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import PgCluster, pg_bindir
from tests.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEM_NS = "learnops-system"
APP_NS = "learning"
RELEASE = "learnops"
VERSION = "0.1.0"
SUBMISSIONS = 40


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cmd: list[str], out: str) -> None:
    print(f"$ {' '.join(cmd)}\n{out.rstrip()}", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="learnops-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        pg, dsn_worker, pgpass_backup = start_postgres(stack)
        kube = start_cluster(stack, work)
        engine = build_images(stack)
        install_chart(kube, dsn_worker)
        start_operator(stack, kube, work)
        runner = PodRunner(kube.api(), engine, [APP_NS]).start()
        stack.callback(runner.stop)
        say(
            f"No node can run pods here: dump pods run in Docker via the kubelet stand-in "
            f"(PVC data in {runner.pvc_root})"
        )
        backup(kube, runner, pg, pgpass_backup)
        worker_batch(stack, kube, pg, work)
        where_next()
    return 0


# -- PostgreSQL ----------------------------------------------------------------
def start_postgres(stack: contextlib.ExitStack) -> tuple[PgCluster, str, str]:
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries missing; run `make deps`")
    say("Starting a throwaway PostgreSQL seeded with sample learning data")
    pg = PgCluster(bindir).start()
    stack.callback(pg.stop)
    worker_pw, backup_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pg.create_user("learnops_worker", worker_pw)
    pg.create_user("learnops_backup", backup_pw)
    app = pg.create_database("learning", owner="learnops_worker")
    pg.fill_mb("learning", 15)  # some bulk next to the sample rows, so the dump has weight
    with pg.connect(app) as c:
        c.execute("GRANT pg_read_all_data TO learnops_backup")
        row = c.execute("SELECT count(*) FROM submissions").fetchone()
    size = pg.database_size("learning") / 2**20
    print(
        f"PostgreSQL {pg.major} on 127.0.0.1:{pg.port}; database 'learning': {size:.0f} MiB, "
        f"{row[0] if row else 0} submissions"
    )
    dsn = f"postgresql://learnops_worker:{worker_pw}@127.0.0.1:{pg.port}/learning"
    pgpass = f"127.0.0.1:{pg.port}:learning:learnops_backup:{backup_pw}\n"
    return pg, dsn, pgpass


# -- cluster and images --------------------------------------------------------
def start_cluster(stack: contextlib.ExitStack, work: Path) -> KubeCluster:
    say("Starting a cluster: the local control plane (kind needs a node image from a registry)")
    kube, plane = start_local(work / "k8s")
    stack.callback(plane.stop)
    stack.callback(kube.close)
    print(f"etcd + kube-apiserver + kube-controller-manager ready in {plane.start_seconds:.1f}s")
    print(f"kubeconfig: {kube.kubeconfig}")
    return kube


def build_images(stack: contextlib.ExitStack) -> Engine:
    say("Building the three images on the locally made Debian base")
    try:
        engine = Engine()
    except EngineUnavailable as exc:
        raise SystemExit(f"the demo needs Docker to run the dump pod: {exc}") from exc
    stack.callback(engine.close)
    for name, dockerfile, context in (
        ("operator", "images/operator/Dockerfile", "."),
        ("dump", "images/dump/Dockerfile", "images/dump"),
        ("learning-worker", "images/learning-worker/Dockerfile", "."),
    ):
        tag = f"learnops/{name}:{VERSION}"
        if name == "dump":  # clients 14-18 from the cached bundles, as CI builds it
            build_dump_image(engine, tag)
        else:
            engine.build(tag, REPO / dockerfile, REPO / context)
        print(f"{tag}: {engine.image_size(tag) / 2**20:.0f} MiB")
    return engine


def install_chart(kube: KubeCluster, dsn_worker: str) -> None:
    say("helm install learnops (restricted Pod Security enforced on both namespaces)")
    for ns in (SYSTEM_NS, APP_NS):
        kube.kubectl("create", "namespace", ns)
        kube.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    # The worker's database URL goes in as a file, never on a command line.
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "learnops-database",
        "-n",
        SYSTEM_NS,
        "--from-file=DATABASE_URL=/dev/stdin",
        input=dsn_worker,
    )
    helm = [
        "helm",
        "install",
        RELEASE,
        str(REPO / "charts/learnops"),
        "-n",
        SYSTEM_NS,
        f"--kubeconfig={kube.kubeconfig}",
        "--wait=false",
    ]
    done = subprocess.run(helm, capture_output=True, text=True, check=True)
    show(helm[:5], done.stdout.split("NOTES:")[0])


def start_operator(stack: contextlib.ExitStack, kube: KubeCluster, work: Path) -> None:
    say("Running the operator as its ServiceAccount with its pod's configuration")
    deploy = _one(kube, SYSTEM_NS, "operator")
    pod = from_deployment(kube, SYSTEM_NS, deploy, "operator", work / "operator-secrets")
    sa = kube.kubectl(
        "get",
        "deployment",
        deploy,
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ).stdout
    kubeconfig = kube.kubeconfig_for(f"system:serviceaccount:{SYSTEM_NS}:{sa}")
    # Only the ports differ from the pod: on one host they must not collide.
    env = {
        **_base_env(),
        **pod.env,
        "KUBECONFIG": str(kubeconfig),
        "LEARNOPS_LIVENESS_PORT": str(free_port()),
        "LEARNOPS_READINESS_PORT": str(free_port()),
        "LEARNOPS_METRICS_PORT": str(free_port()),
        "LEARNOPS_PLAIN_LOGS": "true",
    }
    log = (work / "operator.log").open("w")
    proc = subprocess.Popen(
        [_bin("learnops-operator"), *pod.args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    stack.callback(_terminate, proc, log)
    print(f"operator pid {proc.pid} as system:serviceaccount:{SYSTEM_NS}:{sa}; log {log.name}")


# -- backup --------------------------------------------------------------------
def backup(kube: KubeCluster, runner: PodRunner, pg: PgCluster, pgpass: str) -> None:
    say("Declaring a DatabaseBackup and triggering it now")
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "learning-db-pgpass",
        "-n",
        APP_NS,
        "--from-file=pgpass=/dev/stdin",
        input=pgpass,
    )
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
    host: 127.0.0.1
    port: {pg.port}
    dbname: learning
    user: learnops_backup
    sslMode: disable
    pgpassSecretRef: {{name: learning-db-pgpass, key: pgpass}}
  storage: {{persistentVolumeClaim: {{claimName: backups}}}}
  format: custom
  compression: {{algorithm: gzip, level: 1}}
  timeoutSeconds: 600
  imagePullPolicy: Never
"""
    print(manifest)
    kube.kubectl("apply", "-f", "-", input=manifest)
    wait_for(lambda: _condition(kube, "Ready") == "True", 60, "the backup to be Ready")
    kube.kubectl(
        "annotate", "dbb", "learning-nightly", "-n", APP_NS, "learnops.io/backup-now=demo-1"
    )
    print("annotated learnops.io/backup-now=demo-1")
    wait_for(
        lambda: _condition(kube, "LastBackupSucceeded") in {"True", "False"},
        180,
        "the backup's result",
    )
    get = ["kubectl", "get", "databasebackups", "-n", APP_NS]
    show(get, kube.kubectl(*get[1:]).stdout)
    status = json.loads(
        kube.kubectl(
            "get", "dbb", "learning-nightly", "-n", APP_NS, "-o", "jsonpath={.status}"
        ).stdout
    )
    print(
        json.dumps(
            {
                k: status.get(k)
                for k in ("lastSuccessfulBackup", "lastFailedBackup", "consecutiveFailures")
            },
            indent=2,
        )
    )
    storage = runner.pvc_dir(APP_NS, "backups")
    say(f"Storage ({storage})")
    for path in sorted(storage.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:>10}  {path.relative_to(storage)}")
    latest = next(storage.rglob("*.latest.json"), None)
    if latest:
        print(latest.read_text())


# -- worker --------------------------------------------------------------------
def worker_batch(stack: contextlib.ExitStack, kube: KubeCluster, pg: PgCluster, work: Path) -> None:
    say(f"Running the learning worker over {SUBMISSIONS} sample submissions")
    deploy = _one(kube, SYSTEM_NS, "learning-worker")
    pod = from_deployment(kube, SYSTEM_NS, deploy, "worker", work / "worker-secrets")
    port = free_port()
    env = {**_base_env(), **pod.env, "WORKER_HTTP_PORT": str(port), "WORKER_CONCURRENCY": "4"}
    worker = _bin("learning-worker")
    subprocess.run([worker, "migrate"], env=env, check=True, capture_output=True)
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
            env=env,
            check=True,
            capture_output=True,
        )
    log = (work / "worker.log").open("w")
    proc = subprocess.Popen([worker, *pod.args], env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(_terminate, proc, log)

    wait_for(lambda: _all_done(pg), 120, "the queue to drain")
    stats = subprocess.run([worker, "stats"], env=env, capture_output=True, text=True, check=True)
    show(["learning-worker", "stats"], stats.stdout)
    with pg.connect(pg.admin.with_db("learning")) as c:
        sample = c.execute(
            "SELECT id, result FROM learnops_jobs WHERE status = 'succeeded' ORDER BY id LIMIT 2"
        ).fetchall()
    for job_id, result in sample:
        print(f"job {job_id} feedback: {json.dumps(result, indent=2)[:800]}")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    say("Worker metrics (excerpt)")
    print(
        "\n".join(
            line
            for line in metrics.splitlines()
            if line.startswith("learnops_worker") and "_bucket" not in line
        )[:3000]
    )


def _all_done(pg: PgCluster) -> bool:
    with pg.connect(pg.admin.with_db("learning")) as c:
        row = c.execute(
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) FROM learnops_jobs"
        ).fetchone()
    return row is not None and row[0] == 0


def where_next() -> None:
    say("Done. Everything is cleaned up on exit. Where to look next:")
    print("- docs/runbook.md: install, trigger, restore, alerts, scaling, credentials")
    print("- charts/learnops/values.yaml and manifests/: how this is deployed for real")
    print("- make cluster-up: a control plane of your own to explore with kubectl")
    print("- make test / make bench: the proof and the figures")


# -- helpers -------------------------------------------------------------------
def _one(kube: KubeCluster, ns: str, component: str) -> str:
    return kube.kubectl(
        "get",
        "deployment",
        "-n",
        ns,
        "-l",
        f"app.kubernetes.io/component={component}",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout


def _condition(kube: KubeCluster, kind: str) -> str:
    return kube.kubectl(
        "get",
        "dbb",
        "learning-nightly",
        "-n",
        APP_NS,
        "-o",
        f'jsonpath={{.status.conditions[?(@.type=="{kind}")].status}}',
        check=False,
    ).stdout


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _terminate(proc: subprocess.Popen[bytes], log: object) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    with contextlib.suppress(Exception):
        log.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
