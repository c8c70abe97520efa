"""What a finished restore or drill pod reported beyond a backup's keys, read defensively.

The base result (success, reason, message, artifact, checksum, duration) is results.from_job's;
this adds the restore's own keys. The message is untrusted: every value is type-checked and
bounded, and anything odd is dropped rather than trusted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from learnops_operator import builders, results

MAX_ITEMS = 10
MAX_CHECKS = 30
MAX_ITEM_CHARS = 200


@dataclass(frozen=True)
class Extras:
    parallel_jobs: int | None = None
    tables_checked: int | None = None
    rows_checked: int | None = None
    mismatches: tuple[str, ...] = ()
    checks_passed: tuple[str, ...] = ()


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _strings(value: Any, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    out = [results.bounded(results.mask(v), MAX_ITEM_CHARS) for v in value if isinstance(v, str)]
    return tuple(out[:limit])


def _newest_message(pods: list[dict[str, Any]], succeeded: bool) -> str:
    terminated: list[Mapping[str, Any]] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == builders.CONTAINER_NAME and term:
                terminated.append(term)
    if succeeded:
        terminated = [t for t in terminated if t.get("exitCode") == 0] or terminated
    if not terminated:
        return ""
    newest = max(terminated, key=lambda t: str(t.get("finishedAt") or ""))
    return str(newest.get("message") or "")


def extras(pods: list[dict[str, Any]], succeeded: bool) -> Extras:
    text = _newest_message(pods, succeeded).strip()
    if not text.startswith("{"):
        return Extras()
    try:
        data = json.loads(text)
    except ValueError:
        return Extras()
    if not isinstance(data, dict):
        return Extras()
    return Extras(
        parallel_jobs=_int(data.get("parallelJobs")),
        tables_checked=_int(data.get("tablesChecked")),
        rows_checked=_int(data.get("rowsChecked")),
        mismatches=_strings(data.get("mismatches"), MAX_ITEMS),
        checks_passed=_strings(data.get("checksPassed"), MAX_CHECKS),
    )
