"""Events that explain a change: one per condition transition, never one per repeat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnops_operator import status
from learnops_operator.context import Context

Written = tuple[dict[str, Any], dict[str, Any]] | None


def transitioned(written: Written, kind: str) -> bool:
    """Did condition `kind` change its status or reason in this write?"""
    if written is None:
        return False
    old, new = (status.condition(s, kind) or {} for s in written)
    return (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason"))


def announce_transition(
    ctx: Context,
    body: Mapping[str, Any],
    written: Written,
    kind: str,
    event_type: str,
    reason: str,
    message: str,
) -> None:
    """Post an Event only when condition `kind` actually changed: repeats never storm."""
    if transitioned(written, kind):
        ctx.kube.post_event(body, event_type, reason, message)
