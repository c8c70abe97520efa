"""No test or demo code pretends to be a kubelet or a scheduler: nothing under tests/ (the demo
included) writes a pod's status, binds a pod, names a pod's node or posts Events as the
kubelet. Pod results come from pods a real kubelet runs (tests/e2e on kind); the cluster tier
asserts only what needs no pod.

The scan reads Python through its syntax tree (so reading `pod["spec"]["nodeName"]` or patching a
DatabaseBackup's status stays allowed) and every other text file line by line; the samples below
prove it finds each way of doing it.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (ROOT / "tests", ROOT / "Makefile")
TEXT_SUFFIXES = {".sh", ".yaml", ".yml", ".json", ".toml", ".txt", ".tpl", ".sql", ""}

_POD = re.compile(r"(po|pods?)(/.*)?|pods?\..*")
_POD_PATH = re.compile(r"(^|/)pods/([^/\s\"']+/)?(status|binding)\b")
_CLIENT_WRITE = re.compile(
    r"(create|patch|replace)_namespaced_pod_(status|binding)|create_namespaced_binding|V1Binding"
)
_JSON_NODE_NAME = re.compile(r"\"nodeName\"\s*:|/spec/nodeName\b|\bnodeName=")
_TEXT_RULES = (
    (
        re.compile(r"--subresource[= ]status.*\bpods?\b|\bpods?\b.*--subresource[= ]status"),
        "status",
    ),
    (_POD_PATH, "pod status or binding path"),
    (re.compile(r"^\s*kind:\s*[\"']?Binding[\"']?\s*$"), "a Binding"),
    (re.compile(r"^\s*nodeName:"), "a pod's nodeName"),
    (_JSON_NODE_NAME, "a pod's nodeName"),
)


def _strings(node: ast.Call) -> list[str]:
    return [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def _key(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def python_findings(source: str, unit: bool = False) -> list[str]:
    """What `source` does that only a kubelet or scheduler may do, one line per finding."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call):
            args = _strings(node)
            status = "--subresource=status" in args or any(
                a == "--subresource" and b == "status" for a, b in itertools.pairwise(args)
            )
            if status and any(_POD.fullmatch(a) for a in args):
                found.append(f"{line}: writes a pod's status")
        elif isinstance(node, ast.Attribute | ast.Name):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if _CLIENT_WRITE.fullmatch(name):
                found.append(f"{line}: {name}")
        elif isinstance(node, ast.Constant | ast.JoinedStr):
            # an f-string's pieces with "x" for each placeholder: f"/pods/{pod}/status"
            text = (
                node.value
                if isinstance(node, ast.Constant)
                else "".join(_key(v) or "x" for v in node.values)
            )
            if isinstance(text, str) and _POD_PATH.search(text):
                found.append(f"{line}: a pod status or binding path")
            if isinstance(text, str) and _JSON_NODE_NAME.search(text):
                found.append(f"{line}: sets a pod's nodeName")
        elif isinstance(node, ast.Dict):
            items = {_key(k): v for k, v in zip(node.keys, node.values, strict=True)}
            if _key(items.get("kind")) == "Binding":
                found.append(f"{line}: a Binding")
            if "nodeName" in items and ("containers" in items or "restartPolicy" in items):
                found.append(f"{line}: a pod spec with nodeName")
            spec = items.get("spec")
            if isinstance(spec, ast.Dict) and "nodeName" in {_key(k) for k in spec.keys}:
                found.append(f"{line}: a pod spec with nodeName")
            # Unit tests feed pure functions pod objects; elsewhere a built pod status is written.
            if not unit and "containerStatuses" in items:
                found.append(f"{line}: builds a pod's containerStatuses")
            if not unit and _key(items.get("component")) == "kubelet":
                found.append(f"{line}: an Event in the kubelet's name")
    return found


def text_findings(text: str) -> list[str]:
    return [
        f"{number}: {what}"
        for number, line in enumerate(text.splitlines(), 1)
        for rule, what in _TEXT_RULES
        if rule.search(line)
    ]


def _files() -> list[Path]:
    files: list[Path] = []
    for root in SCANNED:
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in candidates:
            if not path.is_file() or "__pycache__" in path.parts or path == Path(__file__):
                continue
            if path.suffix == ".py" or path.suffix in TEXT_SUFFIXES:
                files.append(path)
    return files


def test_no_test_or_demo_code_writes_pod_status_binds_pods_or_sets_a_node() -> None:
    findings = []
    for path in _files():
        rel = path.relative_to(ROOT)
        text = path.read_text(errors="replace")
        if path.suffix == ".py":
            hits = python_findings(text, unit=rel.parts[:2] == ("tests", "unit"))
        else:
            hits = text_findings(text)
        findings += [f"{rel}:{hit}" for hit in hits]
    assert findings == [], "kubelet or scheduler stand-ins:\n" + "\n".join(findings)
    assert len(_files()) > 100  # the scan saw the tree


POD_STATUS_PATCH = '{"status": {"phase": "Failed"}}'
FORBIDDEN_PYTHON = [
    'kubectl("patch", "pod", name, "--subresource=status", "-p", patch)',
    'kubectl("patch", "pods/x", "--subresource", "status", "-p", patch)',
    "api.patch_namespaced_pod_status(name, ns, body)",
    "api.create_namespaced_pod_binding(name, ns, body)",
    "client.V1Binding(target=target)",
    'url = f"/api/v1/namespaces/{ns}/pods/{pod}/status"',
    'rules = [{"resources": ["pods/binding"], "verbs": ["create"]}]',
    'apply({"apiVersion": "v1", "kind": "Binding", "target": {"name": "node"}})',
    'apply({"kind": "Pod", "spec": {"nodeName": "n", "containers": []}})',
    'spec = {"containers": [c], "nodeName": "kind-control-plane"}',
    "kubectl('patch', 'pod', p, '-p', '{\"spec\": {\"nodeName\": \"n\"}}')",
    'patch = {"status": {"containerStatuses": [{"state": {"terminated": {}}}]}}',
    'apply({"kind": "Event", "reason": "FailedMount", "source": {"component": "kubelet"}})',
]
FORBIDDEN_TEXT = [
    "kubectl patch pod x --subresource=status -p '{}'",
    "curl -X POST $API/api/v1/namespaces/t/pods/x/binding",
    "kind: Binding",
    "  nodeName: kind-control-plane",
]
ALLOWED_PYTHON = [
    'ns.kubectl("patch", "dbb", "stale", "--subresource=status", "--type=merge", "-p", patch)',
    'node = pod["spec"]["nodeName"]',
    'kubectl("get", "pod", p, "-o", "jsonpath={.spec.nodeName}")',
    'backup("hostile", affinity={"nodeName": "control-plane-1"})',
    'docs = [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRoleBinding")]',
    'kubectl("auth", "can-i", "update", "databasebackups", "--subresource=status")',
]
ALLOWED_TEXT = ["kind: RoleBinding", "volumeBindingMode: WaitForFirstConsumer"]


@pytest.mark.parametrize("source", FORBIDDEN_PYTHON)
def test_the_scan_finds_each_way_python_could_fake_a_kubelet(source: str) -> None:
    assert python_findings(source)


@pytest.mark.parametrize("line", FORBIDDEN_TEXT)
def test_the_scan_finds_each_way_a_script_or_manifest_could_fake_a_kubelet(line: str) -> None:
    assert text_findings(line)


@pytest.mark.parametrize("source", ALLOWED_PYTHON)
def test_the_scan_lets_tests_read_pods_and_write_our_own_status(source: str) -> None:
    assert python_findings(source) == []


@pytest.mark.parametrize("line", ALLOWED_TEXT)
def test_the_scan_lets_manifests_bind_roles(line: str) -> None:
    assert text_findings(line) == []


def test_unit_tests_may_hand_pure_functions_a_pods_status() -> None:
    source = 'pod = {"status": {"containerStatuses": [{"name": "dump"}]}}'
    assert python_findings(source, unit=True) == []
    assert python_findings(source) != []
