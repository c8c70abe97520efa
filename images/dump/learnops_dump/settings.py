"""One frozen settings object, built once from the environment in `main()`.

Every field declares its variable, default and doc once (declare.py); `--help` is generated
from that declaration and tests hold `.env.example` to it, so neither can drift from the parser.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from .buckets import Bucket, StorageKind, parse_bucket, parse_storage_kind
from .connection import VARIABLES as CONNECTION_VARIABLES
from .connection import Target, resolve_target
from .declare import Parse, read, setting
from .encryption import parse_recipients
from .errors import ConfigError
from .partsize import MAX_PARTS

log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=enum.Enum)


class DumpFormat(enum.Enum):
    CUSTOM = "custom"
    PLAIN = "plain"
    DIRECTORY = "directory"


class VerifyMode(enum.Enum):
    NONE = "none"
    LIST = "list"
    RESTORE = "restore"


# Artifact names are built from the prefix: keep it a plain file-name part.
PREFIX_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}"
SUBDIR_SEGMENT = r"[A-Za-z0-9._-]{1,255}"
MAX_SUBDIR = 255
# More databases than this in one resource is a mistake, not a plan (each is its own pg_dump).
MAX_DATABASES = 256
# PostgreSQL's NAMEDATALEN - 1: longer names cannot exist.
MAX_DBNAME_BYTES = 63
# Levels each algorithm accepts (pg_dump's and the external tools' common range).
LEVELS = {"gzip": (1, 9, 6), "zstd": (1, 19, 3), "lz4": (1, 12, 1), "none": (0, 0, 0)}


@dataclass(frozen=True)
class Compression:
    algorithm: str
    level: int

    @classmethod
    def parse(cls, text: str) -> Compression:
        algorithm, _, level_text = text.strip().lower().partition(":")
        if algorithm not in LEVELS:
            raise ConfigError(f"BACKUP_COMPRESSION: unknown algorithm {algorithm!r}")
        low, high, default = LEVELS[algorithm]
        if not level_text:
            return cls(algorithm, default)
        if not level_text.isdigit() or not low <= int(level_text) <= high:
            raise ConfigError(f"BACKUP_COMPRESSION: {algorithm} level must be {low}..{high}")
        return cls(algorithm, int(level_text))

    def __str__(self) -> str:
        return "none" if self.algorithm == "none" else f"{self.algorithm}:{self.level}"


@dataclass(frozen=True)
class Retention:
    """How many successful backups survive pruning (grandfather-father-son)."""

    last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 6

    @classmethod
    def parse(cls, text: str) -> Retention:
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, number = part.partition("=")
            key = key.strip()
            if not sep or key not in {f.name for f in fields(cls)}:
                raise ConfigError(f"BACKUP_RETENTION: unknown rule {key!r}")
            if not number.strip().isdigit():
                raise ConfigError(f"BACKUP_RETENTION: {key} must be a whole number >= 0")
            values[key] = int(number)
        if not values:
            raise ConfigError("BACKUP_RETENTION: empty; give e.g. last=7,daily=7")
        return cls(**{f.name: values.get(f.name, 0) for f in fields(cls)})

    def __str__(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def _text(_: str, raw: str) -> str:
    return raw


def _path(_: str, raw: str) -> Path:
    return Path(raw)


def _subdir(_: str, raw: str) -> str | None:
    return parse_subdir(raw)


def _prefix(name: str, raw: str) -> str:
    if not re.fullmatch(PREFIX_PATTERN, raw):
        raise ConfigError(f"{name}: use letters, digits, '.', '_' or '-'")
    return raw


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: not a number") from None
    if value != value or value == float("inf"):
        raise ConfigError(f"{name}: not a finite number")
    return value


def _positive(name: str, raw: str) -> float:
    value = _number(name, raw)
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0")
    return value


def _positive_int(name: str, raw: str) -> int:
    return int(_positive(name, raw))


def _segment_parts(name: str, raw: str) -> int:
    if not (raw.isdigit() and 1 <= int(raw) <= MAX_PARTS):
        raise ConfigError(f"{name}: a whole number from 1 to {MAX_PARTS}")
    return int(raw)


def _days(name: str, raw: str) -> int:
    value = _number(name, raw)
    if value < 0:
        raise ConfigError(f"{name}: must be >= 0")
    return int(value)


def _bytes(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise ConfigError(f"{name}: a whole number of bytes")
    return int(raw)


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: must be true or false")


def _enum(kind: type[_E]) -> Parse:
    def parse(name: str, raw: str) -> _E:
        try:
            return kind(raw.lower())
        except ValueError:
            allowed = " | ".join(str(m.value) for m in kind)
            raise ConfigError(f"{name}: must be one of {allowed}") from None

    return parse


def _compression(_: str, raw: str) -> Compression:
    return Compression.parse(raw)


def _retention(_: str, raw: str) -> Retention:
    return Retention.parse(raw)


def _databases(_: str, raw: str) -> tuple[str, ...]:
    return _database_list(raw)


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told: the variable, its default and its doc, declared once
    per field (declare.py); `--help` and tests/unit/test_ship_env_example.py read them."""

    storage_root: Path | None = setting(
        "BACKUP_STORAGE_ROOT", "", _path,
        "Directory for artifacts and manifests (required for pvc storage).",
    )  # fmt: skip
    storage_subdir: str | None = setting(
        "BACKUP_STORAGE_SUBDIR", "", _subdir,
        "Relative directory inside the root, made by the runner itself if missing.",
    )  # fmt: skip
    prefix: str = setting(
        "BACKUP_PREFIX", "backup", _prefix, "File-name prefix of every artifact."
    )  # fmt: skip
    timeout_seconds: float = setting(
        "BACKUP_TIMEOUT_SECONDS", "300", _positive, "Whole-run limit; then TERM, KILL, exit 5."
    )  # fmt: skip
    kill_grace_seconds: float = setting(
        "BACKUP_KILL_GRACE_SECONDS", "5", _positive, "Wait between TERM and KILL of children."
    )  # fmt: skip
    format: DumpFormat = setting(
        "BACKUP_FORMAT", "custom", _enum(DumpFormat), "custom | plain | directory."
    )  # fmt: skip
    compression: Compression = setting(
        "BACKUP_COMPRESSION", "zstd:3", _compression,
        "gzip | zstd | lz4 | none, optional :level.",
    )  # fmt: skip
    retention: Retention = setting(
        "BACKUP_RETENTION", "last=7,daily=7,weekly=4,monthly=6", _retention,
        "GFS rules over successful backups; the newest good one is never pruned.",
    )  # fmt: skip
    failed_retention_days: int = setting(
        "BACKUP_FAILED_RETENTION_DAYS", "14", _days, "Failed manifests older than this go."
    )  # fmt: skip
    verify: VerifyMode = setting(
        "BACKUP_VERIFY", "list", _enum(VerifyMode),
        "list (TOC + every data block) | restore (+ scratch db) | none.",
    )  # fmt: skip
    row_counts: bool = setting(
        "BACKUP_ROW_COUNTS", "true", _bool,
        "Count every table in the dump's snapshot (tableRowCounts).",
    )  # fmt: skip
    termination_log: Path = setting(
        "BACKUP_TERMINATION_LOG", "/dev/termination-log", _path,
        "Where the JSON summary for Kubernetes goes.",
    )  # fmt: skip
    tmpdir: Path = setting(
        "TMPDIR", "/tmp", _path,  # noqa: S108 - the pod mounts an emptyDir there
        "Private scratch space (the 0600 pgpass copy lives here).",
    )  # fmt: skip
    client_dirs: str = setting(
        "BACKUP_PG_CLIENT_DIRS", "/usr/lib/postgresql/*/bin", _text,
        "Globs (':'-separated) of client bin dirs.",
    )  # fmt: skip
    connect_timeout: int = setting(
        "PGCONNECT_TIMEOUT", "10", _positive_int, "Seconds libpq waits for the server."
    )  # fmt: skip
    databases: tuple[str, ...] = setting(
        "BACKUP_DATABASES", "", _databases,
        'JSON list of databases, each its own artifact, e.g. ["a","b"] (default: PGDATABASE).',
        value=(),
    )  # fmt: skip
    all_databases: bool = setting(
        "BACKUP_ALL_DATABASES", "false", _bool,
        "true: every connectable non-template database.",
    )  # fmt: skip
    dump_globals: bool = setting(
        "BACKUP_GLOBALS", "false", _bool, "true: also pg_dumpall --globals-only (roles, ...)."
    )  # fmt: skip
    role_passwords: bool = setting(
        "BACKUP_GLOBALS_ROLE_PASSWORDS", "false", _bool,
        "true: keep role password hashes in the globals (needs BACKUP_GLOBALS=true).",
    )  # fmt: skip
    storage_kind: StorageKind = setting(
        "BACKUP_STORAGE_KIND", "pvc", parse_storage_kind, "pvc | s3 | gcs | azureBlob."
    )  # fmt: skip
    bucket: Bucket | None = setting(
        "BACKUP_BUCKET/BACKUP_OBJECT_PREFIX/BACKUP_OBJECT_ENDPOINT/BACKUP_S3_REGION/"
        "BACKUP_S3_PATH_STYLE/BACKUP_S3_SSE/BACKUP_S3_SSE_KMS_KEY_ID/BACKUP_S3_STORAGE_CLASS/"
        "BACKUP_S3_ROLE_ARN/BACKUP_S3_WEB_IDENTITY_TOKEN_FILE/BACKUP_AZURE_ACCOUNT/"
        "BACKUP_CREDENTIALS_DIR", "", None,
        "Object-storage target; credentials only as files in BACKUP_CREDENTIALS_DIR.",
    )  # fmt: skip
    object_timeout_seconds: float = setting(
        "BACKUP_OBJECT_TIMEOUT_SECONDS", "60", _positive,
        "Per-request limit (also retry budget).",
    )  # fmt: skip
    expected_size: int | None = setting(
        "BACKUP_EXPECTED_SIZE_BYTES", "", _bytes,
        "Size the part size is planned for (default: the database's or the last backup's).",
    )  # fmt: skip
    segment_parts: int = setting(
        "BACKUP_OBJECT_SEGMENT_PARTS", str(MAX_PARTS), _segment_parts,
        "Parts per object before the artifact continues in a segment (stores below S3's).",
    )  # fmt: skip
    age_recipients: tuple[str, ...] = setting(
        "BACKUP_AGE_RECIPIENTS/BACKUP_AGE_RECIPIENTS_FILE", "", None,
        "age public keys; set = every backup is encrypted.",
        value=(),
    )  # fmt: skip
    age_identity_file: Path | None = setting(
        "BACKUP_AGE_IDENTITY_FILE", "", _path, "age identity (restore/verify only)."
    )  # fmt: skip
    drill_assertions: str = setting(
        "DRILL_ASSERTIONS", "", _text,
        'drill only: JSON list of {"name": ..., "sql": ...}, each must return one true value.',
        value="",
    )  # fmt: skip
    target: Target = setting(
        "/".join(CONNECTION_VARIABLES), "", None,
        "Connection: the first non-empty of SESSION_/BACKUP_/DATABASE_URL[_FILE], else the "
        "libpq variables with PGPASSFILE (PGPASSWORD is refused).",
        value=Target(),
    )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate; raises ConfigError naming the variable, never its value."""
        values = read(cls, env)
        target, source = resolve_target(env)
        log.info("connection source chosen", extra={"event": "settings.source", "source": source})
        kind = values.get("storage_kind", StorageKind.PVC)
        if values.get("databases") and values.get("all_databases"):
            raise ConfigError("BACKUP_DATABASES and BACKUP_ALL_DATABASES exclude each other")
        if values.get("role_passwords") and not values.get("dump_globals"):
            raise ConfigError("BACKUP_GLOBALS_ROLE_PASSWORDS needs BACKUP_GLOBALS=true")
        return cls(
            **values,
            bucket=parse_bucket(env, kind),
            age_recipients=parse_recipients(_recipient_texts(env)),
            target=target,
        )

    def require_storage_root(self) -> Path:
        """Where artifacts go: the root, or the subdirectory inside it."""
        if self.storage_root is None:
            raise ConfigError("BACKUP_STORAGE_ROOT is required")
        return self.storage_root / self.storage_subdir if self.storage_subdir else self.storage_root


def parse_subdir(text: str) -> str | None:
    """A relative path of plain segments: it may never leave the root.

    The runner makes this directory itself (as its own user) because a kubelet-made `subPath`
    directory belongs to root on volumes that ignore fsGroup (hostPath, local-path), and a
    restricted pod cannot chown it.
    """
    text = text.strip()
    if not text:
        return None
    parts = text.rstrip("/").split("/")
    if (
        text.startswith("/")
        or len(text) > MAX_SUBDIR
        or any(p in {".", ".."} or not re.fullmatch(SUBDIR_SEGMENT, p) for p in parts)
    ):
        raise ConfigError(
            "BACKUP_STORAGE_SUBDIR: use a relative path of letters, digits, '.', '_', '-' "
            "without '..'"
        )
    return "/".join(parts)


def _recipient_texts(env: Mapping[str, str]) -> list[str]:
    texts = [env.get("BACKUP_AGE_RECIPIENTS", "")]
    path = env.get("BACKUP_AGE_RECIPIENTS_FILE", "").strip()
    if path:
        try:
            texts.append(Path(path).read_text(encoding="utf-8")[: 1 << 20])
        except OSError as exc:
            raise ConfigError(
                f"BACKUP_AGE_RECIPIENTS_FILE: cannot read it ({exc.strerror})"
            ) from None
    return texts


def _database_list(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError('BACKUP_DATABASES: not a JSON list, e.g. ["app","reports"]') from None
    if not isinstance(data, list) or not data or len(data) > MAX_DATABASES:
        raise ConfigError(f"BACKUP_DATABASES: a JSON list of 1..{MAX_DATABASES} names")
    for name in data:
        if (
            not isinstance(name, str)
            or not name
            or "\x00" in name
            or len(name.encode()) > MAX_DBNAME_BYTES
        ):
            raise ConfigError(
                f"BACKUP_DATABASES: each name must be a string of 1..{MAX_DBNAME_BYTES} bytes"
            )
    if len(set(data)) != len(data):
        raise ConfigError("BACKUP_DATABASES: a database is listed twice")
    return tuple(data)
