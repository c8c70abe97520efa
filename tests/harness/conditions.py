"""The one way tests, the harness and the demo read a Kubernetes status condition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(status: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type `kind` in an object's `status` ({} when there is none).

    Conditions are a map keyed by type: two of one type fail the test."""
    found = [c for c in (status or {}).get("conditions") or [] if c.get("type") == kind]
    assert len(found) <= 1, f"{len(found)} conditions of type {kind}: {found}"
    return dict(found[0]) if found else {}
