"""The in-memory mirror of DatabaseBackups, kept current from the watch stream.

The drift, run and sweep decisions read the desired state from here instead of the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnops_operator import metrics
from learnops_operator.context import Context


def remember(ctx: Context, event_type: str | None, body: Mapping[str, Any]) -> None:
    """Apply one watch event (including the initial listing) to the mirror."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if event_type == "DELETED":
        ctx.backups.pop(key, None)
        ctx.diffbase.forget(str(meta.get("uid")))
        metrics.forget(*key)
        return
    ctx.backups[key] = dict(body)
