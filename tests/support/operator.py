"""Helpers for the operator tests: the installed CRD + RBAC, and real operator processes.

The operator always runs as its own ServiceAccount (a bound token from the TokenRequest API), so
every API call it makes is checked against manifests/operator/rbac.yaml.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness.conditions import condition
from tests.harness.kube import KubeCluster
from tests.harness.net import free_ports, wait_port
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests/crds/learnops.io_databasebackups.yaml"
RESTORE_CRD = ROOT / "manifests/crds/learnops.io_databaserestores.yaml"
RBAC = ROOT / "manifests/operator/rbac.yaml"
OPERATOR_NAMESPACE = "learnops-system"
OPERATOR_SA = f"system:serviceaccount:{OPERATOR_NAMESPACE}:learnops-operator"
DUMP_IMAGE = "learnops/dump:0.1.0"  # the chart's appVersion, built and loaded by the e2e tier
# spec.storage.s3 of the control-plane tests (nothing listens there: no pod runs)
S3 = {
    "bucket": "learnops-backups",
    "prefix": "prod",
    "endpoint": "http://s3.example:8333",
    "forcePathStyle": True,
    "credentialsSecretRef": {"name": "s3-credentials"},
}


def backup(name: str, **spec: Any) -> dict[str, Any]:
    """A DatabaseBackup manifest with a pgpass Secret and the `backups` PVC; overrides merge."""
    body: dict[str, Any] = {
        "schedule": "30 2 * * *",
        "database": {
            "host": "db.example",
            "dbname": "app",
            "user": "backup",
            "pgpassSecretRef": {"name": "pg-backup"},
        },
        "storage": {"persistentVolumeClaim": {"claimName": "backups"}},
    }
    body.update(spec)
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseBackup",
        "metadata": {"name": name},
        "spec": body,
    }


class Namespace:
    """kubectl in one test namespace, and the DatabaseBackups declared there."""

    def __init__(self, cluster: KubeCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, "-n", self.name, input=input, check=check).stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.read(kind, name, namespace=self.name)

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        listed = self.cluster.read(kind, namespace=self.name, selector=selector)
        assert listed is not None  # a list either reads or raises
        data: list[dict[str, Any]] = listed["items"]
        return data

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        return condition(self.status(name), kind)

    def events(
        self,
        reason: str | None = None,
        *,
        about: str | None = None,
        at_least: int = 0,
        timeout: float = 30,
    ) -> list[dict[str, Any]]:
        """The Events (of `reason`, about the object called `about`); with `at_least`, once that
        many exist. The operator posts an Event after the status write it explains, so a test
        that saw the status waits for it."""

        def matching() -> list[dict[str, Any]]:
            return [
                e
                for e in self.items("events")
                if reason in (None, e.get("reason"))
                and about in (None, e["involvedObject"].get("name"))
            ]

        if at_least <= 0:
            return matching()
        found: list[dict[str, Any]] = wait_for(
            lambda: got if len(got := matching()) >= at_least else None,
            timeout,
            f"{at_least} {reason or 'any'} Event(s) in {self.name}",
        )
        return found

    def kubelet_event(self, reason: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for an Event of `reason` that a kubelet reported (e.g. FailedMount); return it."""

        def from_kubelet() -> dict[str, Any] | None:
            for e in self.events(reason):
                if "kubelet" in {
                    (e.get("source") or {}).get("component"),
                    e.get("reportingComponent"),
                }:
                    return e
            return None

        found: dict[str, Any] = wait_for(
            from_kubelet, timeout, f"a {reason} Event from the kubelet"
        )
        return found

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.get("databasebackup", name) or {}).get("status") or {})

    def declare_backup(self, conn: Conn, pgpass_password: str, name: str, **spec: Any) -> None:
        """A DatabaseBackup of `conn` (as pods reach it) with its pgpass Secret; waits for Ready."""
        line = f"{conn.host}:{conn.port}:{conn.dbname}:{conn.user}:{pgpass_password}\n"
        self.kubectl(
            "create", "secret", "generic", f"{name}-pgpass", "--from-file=pgpass=/dev/stdin",
            input=line,
        )  # fmt: skip
        database = {
            "host": conn.host,
            "port": conn.port,
            "dbname": conn.dbname,
            "user": conn.user,
            "sslMode": "disable",
            "pgpassSecretRef": {"name": f"{name}-pgpass", "key": "pgpass"},
        }
        spec = {"image": DUMP_IMAGE, "imagePullPolicy": "Never", "backoffLimit": 0, **spec}
        self.apply(backup(name, database=database, **spec))
        wait_for(lambda: self.condition(name, "Ready").get("status") == "True", 30, "Ready=True")

    def run_now(self, name: str, token: str, timeout: float = 120) -> dict[str, Any]:
        """Trigger an on-demand run and wait until its result is on the resource."""
        self.kubectl("annotate", "dbb", name, f"learnops.io/backup-now={token}")
        status: dict[str, Any] = wait_for(
            lambda: (s := self.status(name)).get("lastResult") and s, timeout, f"{name}'s result"
        )
        return status

    def add_pvc(self, name: str = "backups") -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )

    def add_pgpass_secret(self, password: str, name: str = "pg-backup") -> None:
        # stdin, not argv: a test password belongs in no process list either
        self.kubectl(
            "create",
            "secret",
            "generic",
            name,
            "--from-file=pgpass=/dev/stdin",
            input=f"db.example:5432:app:backup:{password}\n",
        )


class OperatorProcess:
    """One `python -m learnops_operator` subprocess with its own ports and log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.liveness_port, self.readiness_port, self.metrics_port = free_ports(3)
        argv = [
            *argv,
            f"--liveness-port={self.liveness_port}",
            f"--readiness-port={self.readiness_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        with log.open("w") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_live(self, timeout: float = 240) -> None:
        # only waited out on failure: under a load average of 30 on 2 cores, 90 s was too short
        wait_port(self.liveness_port, timeout)

    def healthz(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as resp:
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
            return data

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """/readyz's status code and body (503 carries the problems)."""
        url = f"http://127.0.0.1:{self.readiness_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            text: str = resp.read().decode()
            return text

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class Operators:
    """Starts operator processes as the operator's ServiceAccount; stops them all afterwards."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.started: list[OperatorProcess] = []

    def start(
        self,
        *args: str,
        namespace: str | None = None,
        leader_election: bool = False,
        identity: str | None = None,
        wait: bool = True,
        kubeconfig: Path | None = None,
    ) -> OperatorProcess:
        argv = [
            sys.executable,
            "-m",
            "learnops_operator",
            "--sweep-interval=1",
            "--pending-grace=0",
            "--lease-duration=4",
            *args,
        ]
        if namespace:
            argv.append(f"--namespace={namespace}")
        if not leader_election:
            argv.append("--no-leader-election")
        ident = identity or f"op-{len(self.started)}"
        argv.append(f"--identity={ident}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNOPS_")}
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        process = OperatorProcess(argv, env, self.workdir / f"{ident}.log")
        self.started.append(process)
        if wait:
            process.wait_live()
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
            # shown by pytest only when the test failed
            tail = process.logs().splitlines()[-40:]
            print(f"--- {process.log.name} (last {len(tail)} lines)", *tail, sep="\n")


def install_operator_rbac(kube_cluster: KubeCluster) -> Path:
    kube_cluster.kubectl("apply", "-f", str(CRD))
    kube_cluster.kubectl("apply", "-f", str(RESTORE_CRD))
    kube_cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    kube_cluster.kubectl("apply", "-f", str(RBAC))
    kube_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/databasebackups.learnops.io",
        "crd/databaserestores.learnops.io",
    )
    return kube_cluster.kubeconfig_for(OPERATOR_SA)
