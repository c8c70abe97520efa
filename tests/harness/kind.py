"""The kind provider: one real single-node cluster, created through pytest-kind.

The node image is the standard `kindest/node` wherever it can be had (present locally, or pulled
when LEARNOPS_KIND_PULL=1), else the one assembled locally by kind-node/build-node-image.sh
(cached, so only the first run pays for it). Both go through the same code; whatever this machine
forces on top is added by tests/harness/machine.py, only when detected.

A reaper process outlives us: if this process dies without deleting its cluster (SIGKILL, a
second Ctrl-C during teardown), the reaper deletes it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import machine
from .conditions import condition
from .kube import KubeCluster, kubectl_binary
from .wait import wait_for

HARNESS = Path(__file__).resolve().parent
NODE_IMAGE_SCRIPT = HARNESS / "kind-node" / "build-node-image.sh"
# kind v0.33.0's default node image (pkg/apis/config/defaults/image.go).
STANDARD_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
)
# Host access to in-cluster services: a NodePort published on host loopback only.
NODEPORTS = (30432, 30433, 30333)  # PostgreSQL, the second PostgreSQL (restore target), S3
CLUSTER_LABEL = "io.x-k8s.kind.cluster"


def log(text: str) -> None:
    print(f"[kind] {text}", file=sys.stderr, flush=True)


def kind_path() -> Path:
    found = shutil.which("kind")
    if found is None:
        raise FileNotFoundError("no kind binary on PATH (run `make deps`)")
    return Path(found)


def node_image(progress: Callable[[str], None] = log) -> tuple[str, bool]:
    """(image, standard?): LEARNOPS_KIND_IMAGE, the standard image if it can be had, else ours."""
    if explicit := os.environ.get("LEARNOPS_KIND_IMAGE"):
        return explicit, not explicit.startswith("learnops/")
    if _docker("image", "inspect", STANDARD_IMAGE).returncode == 0:
        return STANDARD_IMAGE, True
    if os.environ.get("LEARNOPS_KIND_PULL") == "1":
        progress(f"pulling {STANDARD_IMAGE}")
        if _docker("pull", STANDARD_IMAGE).returncode == 0:
            return STANDARD_IMAGE, True
    progress("no standard kind node image here: using the locally assembled one")
    started = time.monotonic()
    built = subprocess.run(
        [str(NODE_IMAGE_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )  # its progress goes to our stderr
    if built.returncode != 0:
        raise RuntimeError(f"{NODE_IMAGE_SCRIPT.name} failed (exit {built.returncode})")
    image = built.stdout.strip().splitlines()[-1]
    progress(f"node image {image} ready in {time.monotonic() - started:.0f}s")
    return image, False


class KindCluster:
    """One kind cluster: create, load images, exec on the node, delete."""

    def __init__(self, workdir: Path, name: str | None = None) -> None:
        chosen = name or os.environ.get("LEARNOPS_KIND_NAME")
        self.name = chosen or f"learnops-{secrets.token_hex(3)}"
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = workdir / "kubeconfig"
        self.node = f"{self.name}-control-plane"
        self.host_ports: dict[int, int] = {}
        self._reaper: subprocess.Popen[bytes] | None = None
        self._kind: Path | None = None
        self.machine: machine.Machine | None = None
        self.timings: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------
    def create(self, progress: Callable[[str], None] = log) -> KubeCluster:
        from pytest_kind import KindCluster as PytestKind

        from .net import free_port

        t0 = time.monotonic()
        image, standard = node_image(progress)
        self.timings["node image"] = time.monotonic() - t0
        self.machine = machine.detect(offline=not standard)
        progress(machine.describe(self.machine))
        self.host_ports = {port: free_port() for port in NODEPORTS}
        node: dict[str, Any] = {
            "role": "control-plane",
            "extraPortMappings": [
                {"containerPort": inside, "hostPort": outside, "listenAddress": "127.0.0.1"}
                for inside, outside in self.host_ports.items()
            ],
        }
        base: dict[str, Any] = {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            # the local image has no kindnetd; it brings a static bridge network instead
            "networking": {"disableDefaultCNI": not standard},
            "nodes": [node],
        }
        config = machine.kind_config(self.machine, self.workdir, base)
        config_file = self.workdir / "kind-config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        self._kind = machine.kind_binary(self.machine, kind_path(), self.workdir)
        self._start_reaper()
        wrapped = PytestKind(
            self.name,
            kubeconfig=self.kubeconfig,
            image=image,
            kind_path=self._kind,
            kubectl_path=kubectl_binary(),
        )
        progress(f"kind create cluster {self.name} ({image})")
        t1 = time.monotonic()
        wrapped.create(config_file)
        self.timings["kind create"] = time.monotonic() - t1
        kube = KubeCluster("kind", self.kubeconfig, kubectl_binary())
        wait_for(lambda: _node_ready(kube, self.node), 180, "the kind node to be Ready")
        self.timings["node ready"] = time.monotonic() - t1
        progress(f"node Ready {self.timings['node ready']:.0f}s after kind create started")
        return kube

    def wait_system(self, kube: KubeCluster, progress: Callable[[str], None] = log) -> None:
        """CoreDNS and the storage provisioner Available (pods resolve Services, PVCs bind)."""
        t0 = time.monotonic()
        for ns, deploy in (
            ("kube-system", "coredns"),
            ("local-path-storage", "local-path-provisioner"),
        ):
            kube.kubectl(
                "wait", "-n", ns, f"deployment/{deploy}", "--for=condition=Available",
                "--timeout=240s",
            )  # fmt: skip
        self.timings["system ready"] = time.monotonic() - t0
        progress(f"CoreDNS and local-path-provisioner Available (+{time.monotonic() - t0:.0f}s)")

    def load(self, *images: str) -> None:
        """`kind load docker-image`: the node never pulls."""
        assert self._kind is not None
        subprocess.run(
            [str(self._kind), "load", "docker-image", "--name", self.name, *images],
            check=True, capture_output=True,
        )  # fmt: skip

    def node_exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in the node container (its process list, files on its local volumes)."""
        return subprocess.run(
            ["docker", "exec", self.node, *argv], capture_output=True, text=True, check=check
        )

    def node_exec_bytes(self, *argv: str) -> bytes:
        return subprocess.run(
            ["docker", "exec", self.node, *argv], capture_output=True, check=True
        ).stdout

    def delete(self) -> None:
        if self._kind is not None:
            remove_cluster(self._kind, self.name, self.kubeconfig)
        if self._reaper is not None and self._reaper.stdin is not None:
            self._reaper.stdin.write(b"done\n")
            self._reaper.stdin.close()
            self._reaper.wait(10)

    def _start_reaper(self) -> None:
        """A process in its own session that deletes the cluster if we die first."""
        assert self._kind is not None
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.reaper", str(self._kind), self.name],
            stdin=subprocess.PIPE, start_new_session=True, cwd=HARNESS.parent.parent,
        )  # fmt: skip


def remove_cluster(
    kind: Path | str, name: str, kubeconfig: Path | None = None, patience: float = 30.0
) -> list[str]:
    """`kind delete cluster`, then remove any node container that survived it; returns what is
    still left after `patience` seconds (nothing, normally).

    An interrupt that cuts `kind create` short can leave the node container still being started
    by dockerd while kind deletes: it then outlives `kind delete` and comes up afterwards (seen
    once in the e2e tier's interrupt test). So we look again until it is really gone."""
    argv = [str(kind), "delete", "cluster", "--name", name]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    subprocess.run(argv, capture_output=True, check=False)
    deadline = time.monotonic() + patience
    while (left := leftovers(name)) and time.monotonic() < deadline:
        _docker("rm", "--force", "--volumes", *left)
        time.sleep(1)
    return leftovers(name)


def leftovers(name: str) -> list[str]:
    """Containers of kind cluster `name` that still exist."""
    out = _docker("ps", "-a", "--filter", f"label={CLUSTER_LABEL}={name}", "--format", "{{.Names}}")
    return out.stdout.split()


def _node_ready(kube: KubeCluster, node_name: str) -> bool:
    node = kube.read("node", node_name)
    return node is not None and condition(node["status"], "Ready").get("status") == "True"


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def main(argv: list[str]) -> int:
    """`python -m tests.harness.kind node-image`: make sure a node image is there (make deps)."""
    if argv[1:] != ["node-image"]:
        print("usage: python -m tests.harness.kind node-image", file=sys.stderr)
        return 2
    image, standard = node_image()
    print(f"{image} ({'standard' if standard else 'assembled locally'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
