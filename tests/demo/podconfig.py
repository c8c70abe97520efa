"""Run a Deployment's container as a local process with exactly the configuration its pod gets.

Used where no node can run pods: the env comes from the pod template (envFrom ConfigMaps, plain
values, downward-API names), the args are the template's, and every Secret volume is laid out in
a private local directory whose files replace the in-pod paths found in the env.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.kube import KubeCluster


@dataclass(frozen=True)
class LocalPod:
    args: list[str]
    env: dict[str, str]


def from_deployment(
    kube: KubeCluster, namespace: str, name: str, container: str, workdir: Path
) -> LocalPod:
    deploy = _get(kube, namespace, "deployment", name)
    spec = deploy["spec"]["template"]["spec"]
    c = next(x for x in spec["containers"] if x["name"] == container)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_get(kube, namespace, "configmap", source["configMapRef"]["name"])["data"])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item.get("valueFrom", {}):
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": f"{name}-local", "metadata.namespace": namespace}[
                field
            ]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        local = workdir / mount["name"]
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = _get(kube, namespace, "secret", secret["secretName"]).get("data", {})
        for key, value in data.items():
            target = local / key
            target.write_bytes(base64.b64decode(value))
            os.chmod(target, 0o600)
        for k, v in env.items():
            if v.startswith(mount["mountPath"]):
                env[k] = str(local) + v[len(mount["mountPath"]) :]
    return LocalPod(args=list(c.get("args", [])), env=env)


def _get(kube: KubeCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded
