"""A real Kubernetes control plane from source-built binaries: etcd, kube-apiserver and
kube-controller-manager (garbage collector, CronJob and Job controllers really run).

There is no kubelet and no scheduler: pods are created but never run. Tests here assert only
what needs no pod to run; whatever needs a pod's result runs on kind (tests/e2e).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .net import free_port, wait_port
from .pki import kubeconfig, make_pki

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "harness" / "build-k8s.sh"
START_TIMEOUT = 60.0


def k8s_bindir() -> Path:
    """Build (once, cached by version) and return the directory of the Kubernetes binaries."""
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


class LocalControlPlane:
    """Processes and files of one control plane, all under `workdir`."""

    def __init__(self, workdir: Path, bindir: Path) -> None:
        self.workdir = workdir
        self.bindir = bindir
        self.pki = workdir / "pki"
        self.kubeconfig = workdir / "kubeconfig"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.apiserver_port = 0

    @property
    def kubectl_path(self) -> Path:
        return self.bindir / "kubectl"

    def start(self) -> LocalControlPlane:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        etcd_port, peer_port = free_port(), free_port()
        self.apiserver_port = free_port()
        server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig.write_text(kubeconfig(self.pki, server, "admin"))
        cm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        cm_kubeconfig.write_text(kubeconfig(self.pki, server, "controller-manager"))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        wait_port(etcd_port, START_TIMEOUT)
        p = self.pki
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=0",
        )
        self._wait_ready(server)
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={cm_kubeconfig}",
            f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--controllers=*",
            # Finished Jobs and deleted owners are collected quickly in tests.
            "--concurrent-gc-syncs=5",
            "--profiling=false",
        )
        self._wait_default_serviceaccount()
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self, name: str, *args: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(self.bindir / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        (self.workdir / f"{name}.pid").write_text(str(proc.pid))

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def _wait_ready(self, server: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            if self.kubectl("get", "--raw=/readyz").stdout.strip() == "ok":
                return
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver at {server} not ready; see {self.workdir}")

    def _wait_default_serviceaccount(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            if self.kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"controller-manager made no default ServiceAccount; see {self.workdir}")

    def _check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                name = Path(str(proc.args[0])).name  # type: ignore[index]
                raise RuntimeError(f"{name} exited {proc.returncode}; see {self.workdir}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def stop_by_pidfiles(workdir: Path) -> None:
    """Stop a control plane started by another process (`make cluster-down`)."""
    for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
        pidfile = workdir / f"{name}.pid"
        if not pidfile.exists():
            continue
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink()
