"""A finished run's result, read from the dump runner's termination message (or inferred).

The message is untrusted input: the kubelet truncates it at 4 KiB, the container may have died
before writing it, and a future runner may add keys. Every path yields a RunResult; the message
text is masked again (defence in depth) and bounded before it reaches the resource's status.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from learnops_operator.ours import INSTANCE_LABEL

# Exit codes of learnops-dump and their reasons (docs/dump.md, "Exit codes"; the unit contract
# test tests/unit/test_contract_operator_dump.py holds this table to the runner's).
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
    location: Mapping[str, str] | None = None
    """Where the artifact went (storageKind, bucket, key): names only, bounded."""
    rejected: str | None = None
    """Why the termination message was refused (then the exit code decided), for a Warning."""


# The schema of the runner's summary. The message is untrusted: whoever controls the image
# controls it, so every field is bounded and typed, and anything else refuses the whole message.
MAX_TERMINATION_BYTES = 4096
MAX_ARTIFACT_CHARS = 255
MAX_FIELD_CHARS = 512  # the runner bounds each in bytes, host the longest (docs/dump.md)
MAX_DURATION_SECONDS = 10**7
MAX_SIZE_BYTES = 2**63 - 1
# Artifact names are `<prefix>-<UTC stamp>[-N]<suffixes>` (docs/dump.md); a name that merely
# starts with the prefix could belong to another resource ("nightly" vs "nightly-2").
_ARTIFACT_TAIL = r"-[0-9]{8}T[0-9]{6}Z?[A-Za-z0-9._-]{0,64}"
_SHA256 = re.compile(r"[a-f0-9]{64}")
# C0/C1 controls (ESC, NUL ...), line/paragraph separators and bidi overrides; plain line
# breaks and tabs from a tool's stderr are folded into spaces first.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_FOLD = re.compile(r"[\t\r\n]+")
REASONS = frozenset(REASON_BY_EXIT_CODE.values())
# A refused restore (exit 9) names its refusal (docs/dump.md, restore exit codes).
RESTORE_REFUSALS = frozenset(
    {"CannotCreateDatabase", "ScratchIsSource", "TargetExists", "TargetIsSource", "TargetMissing",
     "TargetNotEmpty"}
)  # fmt: skip


class Refused(ValueError):
    """The termination message breaks the schema; str() says how (never echoing it)."""


def _text(data: Mapping[str, Any], key: str, limit: int, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise Refused(f"{key} is missing")
        return None
    if not isinstance(value, str):
        raise Refused(f"{key} is not a string")
    value = _FOLD.sub(" ", value)
    if len(value) > limit:
        raise Refused(f"{key} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise Refused(f"{key} contains control characters")
    return value


def _integer(data: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{key} is not an integer in {low}..{high}")
    return value


def _number(data: Mapping[str, Any], key: str, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"{key} is not a number")
    if not math.isfinite(value) or not 0 <= value <= high:
        raise Refused(f"{key} is not a finite number in 0..{high:g}")
    return float(value)


@dataclass(frozen=True)
class Summary:
    """The fields of a valid summary that the operator uses."""

    ok: bool
    exit_code: int
    reason: str
    message: str
    artifact: str | None
    size_bytes: int | None
    sha256: str | None
    duration_seconds: float | None
    raw: Mapping[str, Any]
    """The whole object, for the multi-database lines (validated where they are read)."""


def parse_summary(text: str, prefix: str, container_exit_code: Any) -> Summary | None:
    """The runner's summary, None if there is none, Refused if it breaks the schema."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TERMINATION_BYTES:
        raise Refused(f"the message is longer than {MAX_TERMINATION_BYTES} bytes")
    text = text.strip()
    if not text.startswith("{"):
        return None  # no summary (the runner died first): the exit code decides
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except Refused:
        raise
    except ValueError:
        return None  # cut short (the kubelet truncates at 4 KiB): the exit code decides
    if not isinstance(data, dict) or "status" not in data:
        return None
    status = data.get("status")
    if status not in ("ok", "failed"):
        raise Refused("status is neither ok nor failed")
    code = _integer(data, "exitCode", 0, 255)
    if code is None:
        raise Refused("exitCode is missing")
    if isinstance(container_exit_code, int) and code != container_exit_code:
        raise Refused(f"exitCode {code} differs from the container's exit code")
    reason = _text(data, "reason", 64, required=True)
    if reason not in REASONS | RESTORE_REFUSALS:
        raise Refused("reason is not one of the documented reasons")
    allowed = {REASON_BY_EXIT_CODE.get(code)} | (RESTORE_REFUSALS if code == 9 else set())
    if reason not in allowed or (status == "ok") != (code == 0):
        raise Refused("status, exitCode and reason do not agree")
    artifact = _text(data, "artifact", MAX_ARTIFACT_CHARS)
    if artifact is not None and not re.fullmatch(re.escape(prefix) + _ARTIFACT_TAIL, artifact):
        raise Refused(f"artifact is not named {prefix}-<time>...")
    sha256 = _text(data, "sha256", 64)
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise Refused("sha256 is not 64 lowercase hex digits")
    size = _integer(data, "sizeBytes", 0, MAX_SIZE_BYTES)
    several = isinstance(data.get("databases"), list)  # then each line names its artifact
    if status == "ok" and not several and (artifact is None or sha256 is None or size is None):
        raise Refused("a successful run must name its artifact, size and sha256")
    for key in (
        "startedAt",
        "finishedAt",
        "database",
        "host",
        "serverVersion",
        "clientVersion",
        "format",
        "compression",
        "runnerVersion",
    ):
        _text(data, key, MAX_FIELD_CHARS)  # unused, but bounded like the rest
    return Summary(
        ok=status == "ok",
        exit_code=code,
        reason=reason,
        message=_text(data, "message", MAX_TERMINATION_BYTES) or "",
        artifact=artifact,
        size_bytes=size,
        sha256=sha256,
        duration_seconds=_number(data, "durationSeconds", MAX_DURATION_SECONDS),
        raw=data,
    )


def _no_constant(name: str) -> Any:
    raise Refused(f"{name} is not a number")


def from_termination(
    job: str,
    terminated: Mapping[str, Any],
    fallback_time: datetime,
    *,
    prefix: str,
    now: datetime | None = None,
) -> RunResult:
    """From a containerStatuses[].state.terminated block: its message, else its exit code.

    Times are the kubelet's (terminated.startedAt/finishedAt), never the message's, and never
    later than `now`: a future time would freeze the watermark that orders results.
    """
    exit_code = terminated.get("exitCode")
    ceiling = now or datetime.now(UTC)
    finished = min(parse_time(terminated.get("finishedAt")) or fallback_time, ceiling)
    started = parse_time(terminated.get("startedAt"))
    span = (finished - started).total_seconds() if started and started <= finished else None
    rejected = None
    try:
        summary = parse_summary(str(terminated.get("message") or ""), prefix, exit_code)
    except Refused as exc:
        summary, rejected = None, str(exc)
    if summary is not None:
        duration = summary.duration_seconds
        # The kubelet counts whole seconds: allow its rounding, nothing beyond.
        if span is not None and (duration is None or duration > span + 2):
            duration = span
        return RunResult(
            job=job,
            # Both must agree: a container that exited non-zero is never a success.
            succeeded=summary.ok and exit_code in (None, 0),
            reason=summary.reason,
            message=bounded(mask(summary.message)),
            finished_at=finished,
            exit_code=summary.exit_code,
            artifact=summary.artifact,
            size_bytes=summary.size_bytes,
            sha256=summary.sha256,
            duration_seconds=duration,
            databases=_databases(summary.raw.get("databases")),
            databases_omitted=_int(summary.raw.get("databasesOmitted")),
            globals=_globals(summary.raw.get("globals")),
            location=_location(summary.raw.get("location")),
        )
    killed = str(terminated.get("reason") or "")
    if exit_code == 0:
        if rejected is not None:
            message = f"the dump exited 0 but its summary was refused: {rejected}"
            return RunResult(
                job, False, "InvalidSummary", message, finished, exit_code=0, rejected=rejected
            )
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
        message += f" ({_FOLD.sub(' ', _CONTROL.sub('', killed))[:64]})"
    message += (
        f"; its summary was refused: {rejected}"
        if rejected is not None
        else "; no readable summary"
    )
    return RunResult(
        job,
        False,
        reason,
        message,
        finished,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        rejected=rejected,
    )


def from_job_condition(
    job: str, condition: Mapping[str, Any], fallback_time: datetime
) -> RunResult:
    """When no pod is left to read (e.g. killed at the deadline): the Job's own verdict."""
    finished = min(parse_time(condition.get("lastTransitionTime")) or fallback_time, fallback_time)
    if condition.get("type") == "Complete":
        return RunResult(
            job, False, "NoSummary", "the Job completed but no pod summary was found", finished
        )
    reason = str(condition.get("reason") or "Failed")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]{0,63}", reason):
        reason = "Failed"
    if reason == "DeadlineExceeded":
        reason = "Timeout"
    return RunResult(
        job, False, reason, bounded(mask(str(condition.get("message") or ""))), finished
    )


# Bounds for what a pod may put into status through its termination message.
MAX_DATABASES = 256
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


LOCATION_KEYS = {"kind": "storageKind", "bucket": "bucket", "key": "key"}
MAX_LOCATION_CHARS = 1024


def _location(value: Any) -> Mapping[str, str] | None:
    """The pod's say on where the backup went: only known keys, only bounded strings."""
    if not isinstance(value, Mapping):
        return None
    out = {
        ours: bounded(mask(value[theirs]), MAX_LOCATION_CHARS)
        for theirs, ours in LOCATION_KEYS.items()
        if isinstance(value.get(theirs), str) and value[theirs]
    }
    return out or None


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
    job: Mapping[str, Any],
    pods: list[dict[str, Any]],
    container: str,
    now: datetime,
    *,
    prefix: str | None = None,
) -> RunResult | None:
    """A finished Job's result: its newest terminated dump container, else its own verdict.

    `prefix` names the artifacts the run may report: the owner's name unless given (a restore
    reads another resource's backups).
    """
    cond = finished_condition(job)
    if cond is None:
        return None
    name = str(job["metadata"]["name"])
    if prefix is None:
        prefix = str((job["metadata"].get("labels") or {}).get(INSTANCE_LABEL) or "")
    uid = job["metadata"].get("uid")
    terminated: list[Mapping[str, Any]] = []
    for pod in pods:
        # Only the Job's own pods: a look-alike with a copied job-name label says nothing.
        owners = (pod.get("metadata") or {}).get("ownerReferences") or ()
        if uid and not any(o.get("controller") and o.get("uid") == uid for o in owners):
            continue
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
    fallback = min(parse_time(cond.get("lastTransitionTime")) or now, now)
    return from_termination(name, newest, fallback, prefix=prefix, now=now)
