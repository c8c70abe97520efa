"""Everything a machine forces on a kind cluster, in one place, applied only when detected.

kind assumes a host where `docker run --privileged` works, the kubelet may run on the host's
cgroup version, sandboxes may set their OOM score, and images can be pulled. Where one of these
does not hold (measured facts in docs/kind.md), this module detects it and adapts the cluster
at creation, never the node image:

- cgroup v1 (no `/sys/fs/cgroup/cgroup.controllers`): kubelet `failCgroupV1: false` (kubelet
  >= 1.35 refuses v1 otherwise).
- CAP_SYS_RESOURCE missing from the bounding set: containerd `restrict_oom_score_adj = true`
  (runc cannot raise a sandbox's OOM score), and kind's `docker run --privileged` (which fails)
  replaced by every capability but SYS_RESOURCE, unconfined system paths, all devices and
  /dev/kmsg, with the node's cgroup mounts remounted read-write (`remount,bind,rw`; a plain
  `remount,rw` is "busy") before kind's entrypoint.
- no image registry (the standard node image is not to be had): containerd's default registry
  host set to `http://127.0.0.1:1`, so a missing image fails at once, on loopback, instead of
  hanging or leaving the machine.
"""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAP_SYS_RESOURCE = 24
# Where the hosts.toml lives inside the node (containerd's registry config_path).
NODE_CERTS_D = "/etc/containerd/certs.d"

# Replaces `--privileged` in kind's `docker run` of a node, and remounts the cgroup mounts
# read-write before the image's own entrypoint. Every other docker call passes through.
DOCKER_SHIM = r"""#!/bin/bash
# Written by tests/harness/machine.py: kind's `docker run --privileged` cannot work on this
# machine (no CAP_SYS_RESOURCE to grant), so a node gets the same powers minus that one.
set -euo pipefail
real=@REAL_DOCKER@
if [ "${1:-}" = exec ]; then
  # `exec --privileged` fails the same way; the node's own capabilities are what it needs.
  args=()
  for a in "${@:2}"; do [ "$a" = --privileged ] || args+=("$a"); done
  exec "$real" exec "${args[@]}"
fi
if [ "${1:-}" != run ]; then exec "$real" "$@"; fi
privileged=0
args=()
for a in "${@:2}"; do
  if [ "$a" = --privileged ]; then
    privileged=1
    args+=(--cap-add=ALL --cap-drop=SYS_RESOURCE --security-opt systempaths=unconfined
           "--device-cgroup-rule=a *:* rwm" --device=/dev/kmsg)
  else
    args+=("$a")
  fi
done
[ "$privileged" = 1 ] || exec "$real" "$@"
# kind puts the node image last and relies on its entrypoint.
image=${args[-1]}
unset 'args[-1]'
fmt='{{join .Config.Entrypoint " "}} {{join .Config.Cmd " "}}'
entry=$("$real" image inspect -f "$fmt" "$image")
remount='for m in $(awk '"'"'$2 ~ "^/sys/fs/cgroup" {print $2}'"'"' /proc/self/mounts); do
  mount -o remount,bind,rw "$m"; done'
exec "$real" run "${args[@]}" --entrypoint /bin/sh "$image" -c "$remount; exec $entry"
"""


@dataclass(frozen=True)
class Machine:
    """What was detected on this host."""

    cgroup_v1: bool
    """The host mounts cgroup v1 (hybrid or legacy)."""
    no_sys_resource: bool
    """CAP_SYS_RESOURCE is missing from the bounding set (e.g. a Firecracker sandbox)."""
    offline: bool
    """No registry to pull the node's images from."""

    @property
    def needs_workarounds(self) -> bool:
        return self.cgroup_v1 or self.no_sys_resource or self.offline


def detect(*, offline: bool) -> Machine:
    """`offline` is decided by the caller (whether a standard node image could be had)."""
    return Machine(cgroup_v1=_cgroup_v1(), no_sys_resource=_lacks_sys_resource(), offline=offline)


def _cgroup_v1() -> bool:
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def _lacks_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


def kind_config(machine: Machine, workdir: Path, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (a kind Cluster config) with this machine's workarounds added."""
    config = dict(base)
    kubeadm: list[str] = list(config.get("kubeadmConfigPatches") or [])
    containerd: list[str] = list(config.get("containerdConfigPatches") or [])
    nodes = [dict(n) for n in config.get("nodes") or [{"role": "control-plane"}]]
    if machine.cgroup_v1:
        kubeadm.append(
            "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n"
            "failCgroupV1: false\n"
        )
    if machine.no_sys_resource:
        containerd.append(
            '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n'
        )
    if machine.offline:
        certs = workdir / "containerd-certs.d"
        (certs / "_default").mkdir(parents=True, exist_ok=True)
        (certs / "_default" / "hosts.toml").write_text(
            '# no registry: a missing image fails at once, on loopback\nserver = "http://127.0.0.1:1"\n'
        )
        containerd.append(
            f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{NODE_CERTS_D}"\n'
        )
        for node in nodes:
            mounts = list(node.get("extraMounts") or [])
            mounts.append({"hostPath": str(certs), "containerPath": NODE_CERTS_D, "readOnly": True})
            node["extraMounts"] = mounts
    config["nodes"] = nodes
    if kubeadm:
        config["kubeadmConfigPatches"] = kubeadm
    if containerd:
        config["containerdConfigPatches"] = containerd
    return config


def kind_binary(machine: Machine, kind: Path, workdir: Path) -> Path:
    """The kind to run: the real one, or (without CAP_SYS_RESOURCE) a wrapper whose PATH puts
    the docker shim first, so only kind's own docker calls are rewritten."""
    if not machine.no_sys_resource:
        return kind
    real_docker = shutil.which("docker")
    if real_docker is None:
        raise RuntimeError("docker not found on PATH")
    shims = workdir / "machine-shims"
    shims.mkdir(parents=True, exist_ok=True)
    _executable(shims / "docker", DOCKER_SHIM.replace("@REAL_DOCKER@", real_docker))
    wrapper = workdir / "kind"
    _executable(
        wrapper,
        "#!/bin/sh\n# Written by tests/harness/machine.py: kind with the docker shim first.\n"
        f'PATH="{shims}:$PATH" exec "{kind}" "$@"\n',
    )
    return wrapper


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def describe(machine: Machine) -> str:
    """One line for logs and the demo's narration."""
    found = [
        name
        for name, on in (
            ("cgroup v1", machine.cgroup_v1),
            ("no CAP_SYS_RESOURCE", machine.no_sys_resource),
            ("no image registry", machine.offline),
        )
        if on
    ]
    return "machine workarounds: " + (", ".join(found) if found else "none needed")
