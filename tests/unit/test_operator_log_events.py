"""Every operator log line names its event as `area.verb`, and docs/operator.md lists each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "operator" / "learnops_operator"
CONVENTION = re.compile(r"[a-z]+\.[a-z]+(_[a-z]+)*")


def _event_names() -> set[str]:
    names: set[str] = set()
    for path in SOURCE.glob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r'"event": "([^"]+)"', text))
        names |= set(re.findall(r'"((?:kopf|operator)\.log)"', text))  # cli.py's defaults
    return names


def test_operator_log_events_follow_area_dot_verb() -> None:
    names = _event_names()
    assert len(names) > 10
    bad = sorted(n for n in names if not CONVENTION.fullmatch(n))
    assert not bad


def test_every_operator_log_event_is_documented() -> None:
    doc = (ROOT / "docs" / "operator.md").read_text()
    missing = sorted(n for n in _event_names() if f"`{n}`" not in doc)
    assert not missing
