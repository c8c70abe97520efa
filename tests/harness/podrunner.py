"""A kubelet stand-in that really runs pods in Docker, for clusters without a node.

The local control plane has no kubelet (one needs a CRI runtime and cgroup control that this
sandbox cannot give a nested node). This runner does the kubelet's part for the pods of chosen
namespaces: it registers a Node, binds each pending pod to it, lays out its volumes as the kubelet
does (Secret volumes with `..data` symlinks, root owner and fsGroup group; emptyDir; a host
directory per PersistentVolumeClaim), runs the container with the pod's user, groups, read-only
root, dropped capabilities and memory limit, and reports phase, exit code and the termination
message through the pod status subresource. A pod deleted while running (the Job controller does
this at activeDeadlineSeconds) gets SIGTERM, then SIGKILL after its grace period, as on a node.

Only what our pods use is supported: one container, env values, secret/emptyDir/PVC volumes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .containers import Engine

log = logging.getLogger(__name__)
NODE = "learnops-docker-node"
POLL_SECONDS = 0.5
NODE_HEARTBEAT_SECONDS = 10.0
MAX_TERMINATION_MESSAGE = 4096


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodRunner:
    """Run the pods of `namespaces` in Docker until stop()."""

    def __init__(
        self,
        api: client.ApiClient,
        engine: Engine,
        namespaces: list[str],
        selector: str | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.engine = engine
        self.namespaces = namespaces
        # Only pods matching this label selector are run (others stay Pending).
        self.selector = selector
        self.workdir = Path(tempfile.mkdtemp(prefix="learnops-podrunner-"))
        self.pvc_root = self.workdir / "pvc"
        self._stop = threading.Event()
        self._running: dict[str, threading.Thread] = {}
        self._thread = threading.Thread(target=self._loop, name="podrunner", daemon=True)
        self.errors: list[str] = []

    # -- lifecycle -------------------------------------------------------
    def start(self) -> PodRunner:
        self._register_node()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for thread in list(self._running.values()):
            thread.join(timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        """Where a claim's data lives on this host (what a local-path provisioner would do)."""
        return self.pvc_root / namespace / claim

    # -- node --------------------------------------------------------------
    def _register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
        with contextlib.suppress(ApiException):
            self.core.create_node(node)
        self._heartbeat_node()

    def _heartbeat_node(self) -> None:
        now = _now()
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "DockerPodRunner",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    },
                ],
                "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            }
        }
        with contextlib.suppress(ApiException):
            self.core.patch_node_status(NODE, status)

    # -- main loop -----------------------------------------------------------
    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_beat > NODE_HEARTBEAT_SECONDS:
                self._heartbeat_node()
                last_beat = time.monotonic()
            for ns in self.namespaces:
                try:
                    pods = self.core.list_namespaced_pod(ns, label_selector=self.selector).items
                except ApiException as exc:
                    self.errors.append(f"list pods in {ns}: {exc.status}")
                    continue
                for pod in pods:
                    key = f"{ns}/{pod.metadata.name}/{pod.metadata.uid}"
                    if pod.status.phase == "Pending" and key not in self._running:
                        thread = threading.Thread(target=self._run_pod, args=(pod,), daemon=True)
                        self._running[key] = thread
                        thread.start()
            self._stop.wait(POLL_SECONDS)

    # -- one pod ---------------------------------------------------------------
    def _run_pod(self, pod: Any) -> None:
        ns, name = pod.metadata.namespace, pod.metadata.name
        try:
            self._bind(ns, name)
            pod_dir = self.workdir / "pods" / pod.metadata.uid
            pod_dir.mkdir(parents=True)
            argv, term_log = self._docker_argv(pod, pod_dir)
        except (ApiException, ValueError, OSError) as exc:
            self.errors.append(f"{ns}/{name}: {exc}")
            self._report(ns, name, exit_code=128, reason="ContainerCannotRun", message=str(exc))
            return
        started = _now()
        container_id = subprocess.run(argv, capture_output=True, text=True, check=False)
        if container_id.returncode != 0:
            self._report(
                ns,
                name,
                exit_code=128,
                reason="ContainerCannotRun",
                message=container_id.stderr[-500:],
            )
            return
        cid = container_id.stdout.strip()
        self._set_running(ns, name, started)
        exit_code = self._wait(ns, name, cid, pod)
        oom = _docker("inspect", "-f", "{{.State.OOMKilled}}", cid)
        _docker("rm", "-f", cid)
        message = term_log.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE]
        reason = "OOMKilled" if oom == "true" else ("Completed" if exit_code == 0 else "Error")
        self._report(ns, name, exit_code=exit_code, reason=reason, message=message, started=started)

    def _wait(self, ns: str, name: str, cid: str, pod: Any) -> int:
        """Wait for the container; on pod deletion stop it with the pod's grace period."""
        grace = pod.spec.termination_grace_period_seconds or 30
        while True:
            if self._exited(cid):
                return int(_docker("wait", cid) or 1)
            try:
                current = self.core.read_namespaced_pod(name, ns)
                deleting = current.metadata.deletion_timestamp is not None
            except ApiException as exc:
                deleting = exc.status == 404
            if deleting or self._stop.is_set():
                _docker("stop", "-t", str(grace), cid)
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _exited(cid: str) -> bool:
        state = _docker("inspect", "-f", "{{.State.Status}}", cid)
        return state in {"exited", "dead", ""}

    def _bind(self, ns: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        # The generated client cannot parse the Binding response; the bind itself succeeds.
        with contextlib.suppress(ValueError):
            self.core.create_namespaced_binding(ns, body, _preload_content=False)

    def _docker_argv(self, pod: Any, pod_dir: Path) -> tuple[list[str], Path]:
        spec = pod.spec
        if len(spec.containers) != 1 or spec.init_containers:
            raise ValueError("the pod runner supports exactly one container and no init containers")
        c = spec.containers[0]
        psc = spec.security_context
        csc = c.security_context
        uid = (csc and csc.run_as_user) or (psc and psc.run_as_user) or 0
        gid = (csc and csc.run_as_group) or (psc and psc.run_as_group) or 0
        fs_group = psc.fs_group if psc else None
        groups = [
            g
            for g in ([fs_group] if fs_group else [])
            + list((psc and psc.supplemental_groups) or [])
        ]
        volumes = {v.name: v for v in spec.volumes or []}
        mounts: list[tuple[Path, str, bool]] = []
        tmpfs: list[str] = []
        for m in c.volume_mounts or []:
            host = self._volume_dir(pod, volumes[m.name], pod_dir, fs_group)
            if host is None:
                tmpfs.append(m.mount_path)
                continue
            if m.sub_path:
                host = host / m.sub_path
                host.mkdir(parents=True, exist_ok=True)
                _share(host, fs_group)
            mounts.append((host, m.mount_path, bool(m.read_only)))
        term_log = pod_dir / "termination-log"
        term_log.touch()
        os.chown(term_log, uid, gid)
        mounts.append((term_log, c.termination_message_path or "/dev/termination-log", False))
        env = {e.name: e.value or "" for e in c.env or [] if e.value_from is None}
        limits = (c.resources and c.resources.limits) or {}
        memory = _docker_memory(limits.get("memory", "512Mi"))
        read_only = bool(csc and csc.read_only_root_filesystem)
        argv = self.engine.run_argv(
            c.image,
            list(c.args or []),
            user=f"{uid}:{gid}",
            group_add=groups,
            read_only=read_only,
            memory=memory,
            tmpfs=tmpfs,
            mounts=mounts,
            env=env,
            entrypoint=(c.command[0] if c.command else None),
            detach=True,
        )
        if c.command and len(c.command) > 1:
            image_at = argv.index(c.image)
            argv[image_at + 1 : image_at + 1] = c.command[1:]
        return argv, term_log

    def _volume_dir(self, pod: Any, vol: Any, pod_dir: Path, fs_group: int | None) -> Path | None:
        """Host path of a volume; None means a tmpfs (emptyDir with medium Memory)."""
        ns = pod.metadata.namespace
        if vol.secret is not None:
            # Reading Secret data is the kubelet's job; the operator never does it.
            secret = self.core.read_namespaced_secret(vol.secret.secret_name, ns)
            data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            if vol.secret.items:
                data = {i.path: data[i.key] for i in vol.secret.items}
            mode = vol.secret.default_mode if vol.secret.default_mode is not None else 0o644
            vol_dir: Path = self.engine.secret_volume(
                data, fs_group=fs_group or 0, default_mode=mode
            )
            return vol_dir
        if vol.empty_dir is not None:
            if vol.empty_dir.medium == "Memory":
                return None
            d: Path = pod_dir / "emptydir" / str(vol.name)
            d.mkdir(parents=True)
            d.chmod(0o1777)
            return d
        if vol.persistent_volume_claim is not None:
            d = self.pvc_dir(ns, vol.persistent_volume_claim.claim_name)
            d.mkdir(parents=True, exist_ok=True)
            _share(d, fs_group)
            return d
        raise ValueError(f"volume {vol.name}: only secret, emptyDir and PVC volumes are supported")

    # -- status --------------------------------------------------------------
    def _set_running(self, ns: str, name: str, started: str) -> None:
        status = {
            "status": {
                "phase": "Running",
                "startTime": started,
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": True,
                        "restartCount": 0,
                        "image": "",
                        "imageID": "",
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            }
        }
        self._patch_status(ns, name, status)

    def _report(
        self,
        ns: str,
        name: str,
        *,
        exit_code: int,
        reason: str,
        message: str,
        started: str | None = None,
    ) -> None:
        pod = None
        with contextlib.suppress(ApiException):
            pod = self.core.read_namespaced_pod(name, ns)
        cname = pod.spec.containers[0].name if pod else "main"
        finished = _now()
        status = {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": cname,
                        "ready": False,
                        "restartCount": 0,
                        "image": "",
                        "imageID": "",
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": reason,
                                "message": message,
                                "startedAt": started or finished,
                                "finishedAt": finished,
                            }
                        },
                    }
                ],
            }
        }
        self._patch_status(ns, name, status)
        if pod is not None and pod.metadata.deletion_timestamp is not None:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    def _patch_status(self, ns: str, name: str, body: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(name, ns, body)
        except ApiException as exc:
            if exc.status != 404:
                self.errors.append(f"status of {ns}/{name}: {exc.status} {exc.reason}")


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _share(d: Path, fs_group: int | None) -> None:
    """Give a volume to the pod's fsGroup, as the kubelet does for volumes that support it."""
    if fs_group is not None:
        os.chown(d, 0, fs_group)
        d.chmod(0o2775)


def _docker_memory(quantity: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, docker in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + docker
    return quantity
