"""The run's summary: the manifest (storage) and the termination message (Kubernetes).

The termination message follows the schema in docs/dump.md ("Termination message"): the
operator parses it strictly, so every value is bounded and clean here, whatever the
database, the server or an error text put into it.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .settings import Settings
from .errors import ERRORS, REASONS, RunnerError
from .masking import mask, mask_value

TERMINATION_LIMIT = 4096
ELLIPSIS = "..."
# Bytes each string may take once JSON-encoded (quotes excluded). Their sum plus the keys, the
# fixed-size values and the punctuation stays well below TERMINATION_LIMIT, so no field can
# crowd out another; the message is cut first if the total still overflows.
STRING_LIMITS = {
    "message": 1536,
    "artifact": 255,
    "database": 255,
    "host": 512,
    "serverVersion": 128,
    "clientVersion": 32,
    "format": 16,
    "compression": 16,
    "runnerVersion": 32,
}
# The keys of the termination message, fixed by the contract with the operator.
CONTRACT_KEYS = (
    "status",
    "exitCode",
    "reason",
    "message",
    "artifact",
    "sizeBytes",
    "sha256",
    "startedAt",
    "finishedAt",
    "durationSeconds",
    "database",
    "host",
    "serverVersion",
    "clientVersion",
    "format",
    "compression",
    "runnerVersion",
    "location",
)
# Where the artifact went (object storage): only these keys, each bounded.
LOCATION_LIMITS = {"kind": 16, "bucket": 63, "key": 512}
# Control, format (e.g. bidi overrides), surrogate and line/paragraph separator characters.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SIZE = 2**63 - 1


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clean(text: str) -> str:
    """`text` with each run of unsafe characters replaced by one space."""
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in _UNSAFE_CATEGORIES:
            if out and out[-1] != " ":
                out.append(" ")
        else:
            out.append(char)
    return "".join(out).strip()


def _json_len(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def bounded(text: str, limit: int) -> str:
    """Masked, cleaned, and cut on a character boundary to `limit` JSON-encoded bytes."""
    text = clean(mask(text))
    if _json_len(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _json_len(text[:mid] + ELLIPSIS) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS


@dataclass
class Report:
    """Filled in as the run proceeds; only non-sensitive metadata."""

    started: datetime
    database: str
    host: str
    format: str
    compression: str
    credential_source: str
    port: str = ""
    finished: datetime | None = None
    error: RunnerError | None = None
    artifact: str | None = None
    size: int | None = None
    sha256: str | None = None
    server_version: str | None = None
    client_version: str | None = None
    system_identifier: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    databases: list[dict[str, Any]] | None = None
    """One line per database of a multi-database run (BACKUP_DATABASES / _ALL_DATABASES)."""
    globals: dict[str, Any] | None = None
    """The pg_dumpall --globals-only artifact (BACKUP_GLOBALS)."""
    location: dict[str, str] | None = None
    """Object storage: {"kind", "bucket", "key"} of the artifact (names only)."""
    encryption: dict[str, Any] | None = None
    """age recipients as fingerprints (never the keys)."""
    clock: float = field(default_factory=time.monotonic)
    """Monotonic start: the duration never goes negative when the wall clock jumps."""
    elapsed: float | None = None
    table_row_counts: dict[str, int] | None = None
    """schema.table -> rows, counted in the dump's own snapshot (restores compare with it)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    def fail(self, error: RunnerError) -> None:
        if self.error is None:  # the first failure is the cause; later ones are fallout
            self.error = error
            self.artifact = self.size = self.sha256 = None

    def finish(self) -> None:
        self.finished = datetime.now(UTC)
        self.elapsed = time.monotonic() - self.clock

    def warn(self, text: str) -> None:
        self.warnings.append(mask(text))

    def summary(self) -> dict[str, Any]:
        """The contract's keys (termination message and the manifest's top level)."""
        finished = self.finished or datetime.now(UTC)
        elapsed = self.elapsed if self.elapsed is not None else time.monotonic() - self.clock
        data = {
            "status": "ok" if self.ok else "failed",
            "exitCode": self.exit_code,
            "reason": "Ok" if self.error is None else self.error.reason,
            "message": "" if self.error is None else mask(self.error.message),
            "artifact": self.artifact,
            "sizeBytes": self.size,
            "sha256": self.sha256,
            "startedAt": rfc3339(self.started),
            "finishedAt": rfc3339(finished),
            "durationSeconds": round(elapsed, 3) if math.isfinite(elapsed) else 0.0,
            "database": self.database,
            "host": self.host,
            "serverVersion": self.server_version,
            "clientVersion": self.client_version,
            "format": self.format,
            "compression": self.compression,
            "runnerVersion": __version__,
            **({} if self.databases is None else {"databases": self.databases}),
            **({} if self.globals is None else {"globals": self.globals}),
            "location": self.location if self.ok else None,
        }
        masked = mask_value(data)
        assert isinstance(masked, dict)
        return masked

    def manifest(self) -> dict[str, Any]:
        """The manifest: the summary plus where the data came from and what the run did."""
        data = {
            **self.summary(),
            "port": self.port,
            "systemIdentifier": self.system_identifier,
            "credentialSource": self.credential_source,
            "stages": self.stages,
            "verification": self.verification,
            "pruned": self.pruned,
            "warnings": [mask(w) for w in self.warnings],
            "encryption": self.encryption,
        }
        if self.ok and self.table_row_counts is not None:
            data["tableRowCounts"] = self.table_row_counts
        return data

    def globals_manifest(self, stem: str) -> dict[str, Any]:
        """The globals artifact's own manifest, beside the run's (which also lists it)."""
        assert self.globals is not None
        summary = self.summary()
        keep = ("startedAt", "finishedAt", "host", "serverVersion", "clientVersion")
        return {
            **{k: summary[k] for k in keep},
            **self.globals,
            "runManifest": f"{stem}.manifest.json",
            "runnerVersion": __version__,
        }

    def placeholder(self) -> dict[str, Any]:
        """What a reserved manifest says while its run is still going."""
        return {
            "status": "running",
            "startedAt": rfc3339(self.started),
            "database": mask(self.database),
            "host": mask(self.host),
            "runnerVersion": __version__,
        }


def termination_message(summary: dict[str, Any]) -> str:
    """Compact JSON of at most TERMINATION_LIMIT bytes, every value within its schema."""
    data: dict[str, Any] = {}
    for key in CONTRACT_KEYS:
        value = summary.get(key)
        if key in STRING_LIMITS:
            data[key] = None if value is None else bounded(str(value), STRING_LIMITS[key])
        elif key == "location":
            data[key] = (
                {
                    k: bounded(str(value[k]), limit)
                    for k, limit in LOCATION_LIMITS.items()
                    if isinstance(value.get(k), str)
                }
                or None
                if isinstance(value, dict)
                else None
            )
        else:
            data[key] = value
    codes = {"Ok": 0, **{cls.reason: cls.exit_code for cls in ERRORS}}
    consistent = data["reason"] in REASONS and data["exitCode"] == codes[data["reason"]]
    if not consistent or data["status"] != ("ok" if data["reason"] == "Ok" else "failed"):
        # never an "ok" that is not one: an inconsistent summary is a runner bug
        data.update(status="failed", exitCode=1, reason="InternalError")
    if data["artifact"] == "":
        data["artifact"] = None
    size = data["sizeBytes"]
    if not (isinstance(size, int) and 0 <= size <= MAX_SIZE):
        data["sizeBytes"] = None
    if not (isinstance(data["sha256"], str) and _SHA256.fullmatch(data["sha256"])):
        data["sha256"] = None
    duration = data["durationSeconds"]
    if not (isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0):
        data["durationSeconds"] = 0.0
    for key in ("serverVersion", "clientVersion"):
        if data[key] == "":
            data[key] = None
    for key in ("database", "host", "format", "compression", "runnerVersion", "message"):
        if data[key] is None:
            data[key] = ""
    _add_parts(data, summary)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    while len(text.encode()) > TERMINATION_LIMIT and data["message"]:
        # defensive: the limits above already fit; shorten the message, never the facts
        excess = len(text.encode()) - TERMINATION_LIMIT
        data["message"] = bounded(data["message"], max(0, _json_len(data["message"]) - excess))
        if data["message"] == ELLIPSIS:
            data["message"] = ""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text


# What a part's line carries in the termination message (the manifest has every key).
PART_KEYS = ("database", "status", "reason", "artifact", "sizeBytes", "sha256")
# The parts get what the contract's keys leave; lines that do not fit are counted instead.
PARTS_BUDGET = TERMINATION_LIMIT - 1024


def _part(line: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in PART_KEYS:
        value = line.get(key)
        if key in {"database", "artifact", "reason"} and isinstance(value, str):
            out[key] = bounded(value, 255 if key != "reason" else 32)
        elif (
            (key == "sizeBytes" and isinstance(value, int) and 0 <= value <= MAX_SIZE)
            or (key == "sha256" and isinstance(value, str) and _SHA256.fullmatch(value))
            or (key == "status" and value in ("ok", "failed"))
        ):
            out[key] = value
    if isinstance(line.get("rolePasswords"), bool):
        out["rolePasswords"] = line["rolePasswords"]
    return out


def _add_parts(data: dict[str, Any], summary: dict[str, Any]) -> None:
    """`globals` and `databases` within the limit: checksums go first, then lines from the
    end (counted in `databasesOmitted`)."""
    if isinstance(summary.get("globals"), dict):
        data["globals"] = _part(summary["globals"])
    lines = summary.get("databases")
    if not isinstance(lines, list):
        return
    parts = [_part(line) for line in lines if isinstance(line, dict)]
    data["databases"] = parts

    def size() -> int:
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())

    if size() > PARTS_BUDGET:
        for part in parts:
            part.pop("sha256", None)
    while parts and size() > PARTS_BUDGET:
        parts.pop()
        data["databasesOmitted"] = len(lines) - len(parts)


def start_report(settings: Settings) -> Report:
    """The report of a run starting now, for the configured database (PVC or bucket run)."""
    return Report(
        started=datetime.now(UTC),
        database=settings.target.dbname,
        host=settings.target.host,
        port=settings.target.port,
        format=settings.format.value,
        compression=str(settings.compression),
        credential_source=settings.target.source,
    )
