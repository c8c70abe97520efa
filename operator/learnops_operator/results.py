"""A finished run's result, read from the dump runner's termination message (or inferred).

The message is untrusted input: the kubelet truncates it at 4 KiB, the container may have died
before writing it, and a future runner may add keys. Every path yields a RunResult; the message
text is masked again (defence in depth) and bounded before it reaches the resource's status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Exit codes of learnops-dump (contracts.md) and what they mean.
REASON_BY_EXIT_CODE = {
    0: "Ok",
    1: "InternalError",
    2: "ConfigError",
    3: "ConnectionError",
    4: "DumpError",
    5: "Timeout",
    6: "StorageError",
    7: "VerificationError",
    8: "VersionMismatch",
    9: "RestoreRefused",
}
MAX_MESSAGE_CHARS = 1024

_URI_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_KEY_VALUE = re.compile(r"(?i)(?P<key>password|passwd|pwd|secret|token)(?P<sep>\s*[=:]\s*)\S+")


def mask(text: str) -> str:
    """Remove URI userinfo and password=... pairs; the runner masks too, this is the second line."""
    text = _URI_USERINFO.sub(r"\g<scheme>***@", text)
    return _KEY_VALUE.sub(r"\g<key>\g<sep>***", text)


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunResult:
    """One finished run (one Job), as recorded in status."""

    job: str
    succeeded: bool
    reason: str
    message: str
    finished_at: datetime
    exit_code: int | None = None
    artifact: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    duration_seconds: float | None = None
    databases: tuple[dict[str, Any], ...] = ()
    """Per-database lines of a multi-database run, validated and bounded."""
    databases_omitted: int | None = None
    globals: dict[str, Any] | None = None
    """The roles-and-globals artifact, validated."""


def from_termination(job: str, terminated: Mapping[str, Any], fallback_time: datetime) -> RunResult:
    """From a containerStatuses[].state.terminated block: its message, else its exit code."""
    exit_code = terminated.get("exitCode")
    finished = parse_time(terminated.get("finishedAt")) or fallback_time
    summary = _summary(str(terminated.get("message") or ""))
    if summary is not None:
        status_ok = summary.get("status") == "ok"
        code = summary.get("exitCode", exit_code)
        return RunResult(
            job=job,
            # Both must agree: a container that exited non-zero is never a success.
            succeeded=status_ok and (exit_code in (None, 0)),
            reason=_str(summary.get("reason")) or REASON_BY_EXIT_CODE.get(code or 0, "Unknown"),
            message=bounded(mask(_str(summary.get("message")) or "")),
            finished_at=parse_time(summary.get("finishedAt")) or finished,
            exit_code=code if isinstance(code, int) else None,
            artifact=_str(summary.get("artifact")),
            size_bytes=_int(summary.get("sizeBytes")),
            sha256=_str(summary.get("sha256")),
            duration_seconds=_float(summary.get("durationSeconds")),
            databases=_databases(summary.get("databases")),
            databases_omitted=_int(summary.get("databasesOmitted")),
            globals=_globals(summary.get("globals")),
        )
    killed = str(terminated.get("reason") or "")
    if exit_code == 0:
        return RunResult(
            job, False, "NoSummary", "the dump exited 0 without its summary", finished, exit_code=0
        )
    reason = (
        "OOMKilled"
        if killed == "OOMKilled"
        else REASON_BY_EXIT_CODE.get(exit_code if isinstance(exit_code, int) else -1, "Failed")
    )
    message = f"the dump container terminated with exit code {exit_code}"
    if killed:
        message += f" ({killed})"
    return RunResult(
        job,
        False,
        reason,
        message + "; no readable summary",
        finished,
        exit_code=exit_code if isinstance(exit_code, int) else None,
    )


def from_job_condition(
    job: str, condition: Mapping[str, Any], fallback_time: datetime
) -> RunResult:
    """When no pod is left to read (e.g. killed at the deadline): the Job's own verdict."""
    finished = parse_time(condition.get("lastTransitionTime")) or fallback_time
    if condition.get("type") == "Complete":
        return RunResult(
            job, False, "NoSummary", "the Job completed but no pod summary was found", finished
        )
    reason = str(condition.get("reason") or "Failed")
    if reason == "DeadlineExceeded":
        reason = "Timeout"
    return RunResult(
        job, False, reason, bounded(mask(str(condition.get("message") or ""))), finished
    )


def _summary(message: str) -> dict[str, Any] | None:
    message = message.strip()
    if not message.startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None  # truncated by the kubelet or garbage: fall back to the exit code
    return data if isinstance(data, dict) and "status" in data else None


# Bounds for what a pod may put into status through its termination message.
MAX_DATABASES = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def _databases(value: Any) -> tuple[dict[str, Any], ...]:
    """Each line keeps only known keys with values of the right shape; others are dropped."""
    if not isinstance(value, list):
        return ()
    lines = []
    for item in value[:MAX_DATABASES]:
        if not isinstance(item, dict):
            continue
        name = _str(item.get("database"))
        status = item.get("status")
        if name is None or len(name.encode()) > 63 or status not in ("ok", "failed"):
            continue
        line: dict[str, Any] = {"database": name, "status": status}
        line.update(_artifact_fields(item))
        if status == "failed" and (reason := _str(item.get("reason"))):
            line["reason"] = bounded(reason, 64)
        lines.append(line)
    return tuple(lines)


def _globals(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("status") not in ("ok", "failed"):
        return None
    entry: dict[str, Any] = {"status": value["status"], **_artifact_fields(value)}
    if isinstance(value.get("rolePasswords"), bool):
        entry["rolePasswords"] = value["rolePasswords"]
    return entry


def _artifact_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    artifact = _str(item.get("artifact"))
    if artifact is not None and _NAME.fullmatch(artifact):
        fields["artifact"] = artifact
    size = _int(item.get("sizeBytes"))
    if size is not None and size >= 0:
        fields["sizeBytes"] = size
    sha = _str(item.get("sha256"))
    if sha is not None and _SHA256.fullmatch(sha):
        fields["sha256"] = sha
    return fields


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def finished_condition(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Job's terminal condition (Complete or Failed, status True), if it has finished."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def from_job(
    job: Mapping[str, Any], pods: list[dict[str, Any]], container: str, now: datetime
) -> RunResult | None:
    """A finished Job's result: its newest terminated dump container, else its own verdict."""
    cond = finished_condition(job)
    if cond is None:
        return None
    name = str(job["metadata"]["name"])
    terminated: list[Mapping[str, Any]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            term = (status.get("state") or {}).get("terminated")
            if status.get("name") == container and term:
                terminated.append(term)
    if cond.get("type") == "Complete":
        # The pod that made the Job complete; earlier attempts may have failed.
        terminated = [t for t in terminated if t.get("exitCode") == 0] or terminated
    if not terminated:
        return from_job_condition(name, cond, now)
    newest = max(terminated, key=lambda t: str(t.get("finishedAt") or ""))
    return from_termination(name, newest, parse_time(cond.get("lastTransitionTime")) or now)
