"""Helpers for the shipping tests (chart, manifests, .env.example, runbook).

Plain functions, cached per session: rendering the chart takes helm about a second per scenario.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from tests.harness import tiers
from tests.harness.validate import load_all, pinned_release

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "learnops"
MANIFESTS = ROOT / "manifests"
CRD_SOURCE = MANIFESTS / "crds" / "learnops.io_databasebackups.yaml"
CRD_CHART_COPY = CHART / "files" / "crds" / "learnops.io_databasebackups.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
CACHE_BIN = Path(os.environ.get("HOME", "/root")) / ".cache" / "learnops" / "bin"
# The cluster release pinned in tests/harness/gomod/go.mod; helm's built-in default is older
# than the chart's objects.
KUBE_VERSION = pinned_release()
WORKER_CAP = 4


def tool(name: str, tier: str = "unit") -> str:
    """`make deps` puts helm and kubectl into ~/.cache/learnops/bin; prefer those builds."""
    cached = CACHE_BIN / name
    if cached.exists():
        return str(cached)
    found = shutil.which(name)
    if found is None:
        tiers.unavailable(tier, f"{name} not found (run `make deps`)")
    return found


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [tool("helm"), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def scenarios() -> list[str]:
    """ "default" plus the name of every ci/*-values.yaml file."""
    return ["default", *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]


def values_args(scenario: str) -> list[str]:
    return [] if scenario == "default" else ["-f", str(CHART / "ci" / scenario)]


# Rendering as against a cluster that already serves the CRD (any install after the first).
CRD_API = ("--api-versions", "learnops.io/v1alpha1/DatabaseBackup")


@functools.cache
def render(
    scenario: str = "default", extra: tuple[str, ...] = (), *, crd_served: bool = True
) -> tuple[dict[str, Any], ...]:
    """`helm template` of one scenario, as parsed objects (test hooks included)."""
    served = CRD_API if crd_served else ()
    out = helm(
        "template", "lo", str(CHART), "--namespace", "learnops", "--kube-version", KUBE_VERSION,
        *values_args(scenario), *extra, *served,
    )  # fmt: skip
    return tuple(load_all(out.stdout))


@functools.cache
def kustomize(path: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` (offline) of a directory under manifests/."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(MANIFESTS / path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return tuple(load_all(out.stdout))


def crd_schema(source: Path = CRD_SOURCE) -> dict[str, Any]:
    """openAPIV3Schema of the served version of a CRD (DatabaseBackup's unless told)."""
    crd = yaml.safe_load(source.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def pod_specs(docs: Sequence[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of every Pod, and of every workload's pod template."""
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        kind = doc["kind"]
        if kind == "Pod":
            yield label, doc["spec"]
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            yield label, doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield label, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Field-by-field check against the restricted Pod Security Standard (latest)."""
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key} is set")
    for volume in spec.get("volumes") or []:
        allowed = {
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        }
        kinds = set(volume) - {"name"}
        if not kinds <= allowed:
            problems.append(f"volume {volume['name']} uses {sorted(kinds - allowed)}")
    if "seLinuxOptions" in pod_sc and pod_sc["seLinuxOptions"].get("type") not in (
        None,
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
    ):
        problems.append("pod seLinuxOptions.type")
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        sc = c.get("securityContext") or {}
        name = c["name"]

        def field(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc.get(key, pod_sc.get(key))

        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if field("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot must be true")
        if field("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (field("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile {seccomp!r}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
        # Not required by the standard, but by our hardened defaults.
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem must be true")
    return problems


def normalized(node: Any) -> Any:
    """Whitespace runs in strings collapsed: YAML parsers disagree on folding more-indented
    lines of `>-` scalars (PyYAML keeps an extra newline where Go's yaml does not), which
    changes no meaning in a description or a CEL rule."""
    if isinstance(node, dict):
        return {k: normalized(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalized(v) for v in node]
    if isinstance(node, str):
        return " ".join(node.split())
    return node


def crd_validator(source: Path = CRD_SOURCE) -> Any:
    """A validator of DatabaseBackups against the CRD's openAPIV3Schema, rejecting unknown
    fields as `kubectl apply` field validation does. CEL rules are not evaluated offline; the
    API server checks them in the cluster tests."""
    schema = copy.deepcopy(crd_schema(source))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    out = []
    for indent, lang, body in FENCE.findall(RUNBOOK.read_text()):
        if lang == language:
            out.append("\n".join(line.removeprefix(indent) for line in body.splitlines()))
    return out


def yaml_objects() -> list[dict[str, Any]]:
    return [doc for block in blocks("yaml") for doc in yaml.safe_load_all(block) if doc]
