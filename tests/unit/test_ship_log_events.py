"""Every structured log line of the dump runner and the learning worker names its event
`area.verb` (lower case, one dot; the operator's rule, tests/unit/test_operator_log_events.py),
and the program's doc lists each one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONVENTION = re.compile(r"[a-z]+\.[a-z]+(_[a-z]+)*")
PROGRAMS = {
    "dump": (ROOT / "images" / "dump" / "learnops_dump", ROOT / "docs" / "dump.md"),
    "worker": (
        ROOT / "images" / "learning-worker" / "learnops_worker",
        ROOT / "docs" / "worker.md",
    ),
}
# What the dump runner's f-string events stand for: every command, every summary kind.
EXPANSIONS = {
    "command": ("run", "restore", "drill", "verify"),
    "summary.kind": ("run", "restore", "drill"),
}


def _names_in(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):  # f"{summary.kind}.finished": one name per kind
        head, *rest = node.values
        assert isinstance(head, ast.FormattedValue), ast.unparse(node)
        tail = "".join(str(p.value) for p in rest if isinstance(p, ast.Constant))
        return [f"{kind}{tail}" for kind in EXPANSIONS[ast.unparse(head.value)]]
    return []


def _event_names(source: Path) -> dict[str, str]:
    """event name -> where it is used, for every way the two packages name an event: an
    `"event": ...` key, `event(log, NAME, ...)`, `_job_extra(held, NAME)`, the formatters'
    defaults, and a tuple assignment to `event`."""
    found: dict[str, str] = {}
    for path in sorted(source.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event":
                        names += _names_in(value)
            elif isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if called in {"event", "_job_extra"} and len(node.args) >= 2:
                    names += _names_in(node.args[1])
                for before, after in zip(node.args, node.args[1:], strict=False):
                    if isinstance(before, ast.Constant) and before.value == "event":
                        names += _names_in(after)  # setdefault("event", ...), getattr(...)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
                for target in node.targets:
                    if isinstance(target, ast.Tuple):
                        for t, v in zip(target.elts, node.value.elts, strict=False):
                            if isinstance(t, ast.Name) and t.id == "event":
                                names += _names_in(v)
            for name in names:
                found.setdefault(name, f"{path.name}:{getattr(node, 'lineno', '?')}")
    return found


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_log_events_follow_area_dot_verb(program: str) -> None:
    names = _event_names(PROGRAMS[program][0])
    assert len(names) > 15
    bad = sorted(f"{n} ({where})" for n, where in names.items() if not CONVENTION.fullmatch(n))
    assert not bad


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_log_event_is_documented(program: str) -> None:
    source, doc = PROGRAMS[program]
    text = doc.read_text()
    missing = sorted(n for n in _event_names(source) if f"`{n}`" not in text)
    assert not missing, f"{doc.name} does not list {missing}"
