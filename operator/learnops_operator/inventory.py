"""status.artifacts of a DatabaseBackup: what can be restored, newest first, bounded.

Entries come from recorded successful runs (the runner's termination message) and gain a
verifiedRestoreTime when a restore drill of that artifact passes. At most MAX_ARTIFACTS and never
more than retention.keepLast, which retention always keeps: every listed artifact still exists
unless someone removed it from the storage by hand.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from learnops_operator.results import RunResult

MAX_ARTIFACTS = 10


def bound(keep_last: int) -> int:
    return max(1, min(MAX_ARTIFACTS, keep_last))


def with_artifact(
    status: Mapping[str, Any], result: RunResult, keep_last: int, when: str
) -> dict[str, Any]:
    """A successful run's artifact at the front of the list (once, by name)."""
    new = copy.deepcopy(dict(status))
    if not result.succeeded or not result.artifact:
        return new
    entry: dict[str, Any] = {"name": result.artifact, "time": when}
    if result.size_bytes is not None:
        entry["sizeBytes"] = result.size_bytes
    if result.sha256 is not None:
        entry["sha256"] = result.sha256
    rest = [a for a in new.get("artifacts") or () if a.get("name") != result.artifact]
    new["artifacts"] = [entry, *rest][: bound(keep_last)]
    return new


def mark_verified(status: Mapping[str, Any], artifact: str, when: str) -> dict[str, Any]:
    new = copy.deepcopy(dict(status))
    for entry in new.get("artifacts") or ():
        if entry.get("name") == artifact:
            entry["verifiedRestoreTime"] = when
    return new


def newest(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The newest successful artifact: the inventory's head, else lastSuccessfulBackup."""
    items = status.get("artifacts") or ()
    if items:
        return dict(items[0])
    last = status.get("lastSuccessfulBackup") or {}
    if not last.get("artifact"):
        return None
    verified = (status.get("lastVerifiedRestore") or {}).get("artifact") == last["artifact"]
    entry = {"name": last["artifact"], "time": last.get("time")}
    if verified:
        entry["verifiedRestoreTime"] = (status.get("lastVerifiedRestore") or {}).get("time")
    return entry
