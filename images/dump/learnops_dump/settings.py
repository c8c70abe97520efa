"""One frozen settings object, built once from the environment in `main()`.

Every field documents itself (`metadata["doc"]`) and names the variable it
comes from (`metadata["env"]`); `--help` is generated from the same metadata
so the documentation cannot drift from the parser.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .buckets import Bucket, StorageKind, parse_bucket
from .connection import Target, resolve_target
from .encryption import parse_recipients
from .errors import ConfigError

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


def _meta(env: str, doc: str) -> dict[str, str]:
    return {"env": env, "doc": doc}


@dataclass(frozen=True)
class Settings:
    storage_root: Path | None = field(
        default=None,
        metadata=_meta("BACKUP_STORAGE_ROOT", "Directory for artifacts and manifests (required)."),
    )
    storage_subdir: str | None = field(
        default=None,
        metadata=_meta(
            "BACKUP_STORAGE_SUBDIR",
            "Relative directory inside the root, made by the runner itself if missing.",
        ),
    )
    prefix: str = field(
        default="backup", metadata=_meta("BACKUP_PREFIX", "File-name prefix of every artifact.")
    )
    timeout_seconds: float = field(
        default=300.0,
        metadata=_meta("BACKUP_TIMEOUT_SECONDS", "Whole-run limit; then TERM, KILL, exit 5."),
    )
    kill_grace_seconds: float = field(
        default=5.0,
        metadata=_meta("BACKUP_KILL_GRACE_SECONDS", "Wait between TERM and KILL of children."),
    )
    format: DumpFormat = field(
        default=DumpFormat.CUSTOM,
        metadata=_meta("BACKUP_FORMAT", "custom | plain | directory."),
    )
    compression: Compression = field(
        default=Compression("zstd", 3),
        metadata=_meta("BACKUP_COMPRESSION", "gzip | zstd | lz4 | none, optional :level."),
    )
    retention: Retention = field(
        default=Retention(),
        metadata=_meta("BACKUP_RETENTION", "GFS rules over successful backups, e.g. last=7."),
    )
    failed_retention_days: int = field(
        default=14,
        metadata=_meta("BACKUP_FAILED_RETENTION_DAYS", "Failed manifests older than this go."),
    )
    verify: VerifyMode = field(
        default=VerifyMode.LIST,
        metadata=_meta(
            "BACKUP_VERIFY", "list (TOC + every data block) | restore (+ scratch db) | none."
        ),
    )
    row_counts: bool = field(
        default=True,
        metadata=_meta(
            "BACKUP_ROW_COUNTS", "Count every table in the dump's snapshot (tableRowCounts)."
        ),
    )
    termination_log: Path = field(
        default=Path("/dev/termination-log"),
        metadata=_meta("BACKUP_TERMINATION_LOG", "Where the JSON summary for Kubernetes goes."),
    )
    tmpdir: Path = field(
        default=Path("/tmp"),  # noqa: S108 - the pod mounts an emptyDir there
        metadata=_meta("TMPDIR", "Private scratch space (the 0600 pgpass copy lives here)."),
    )
    client_dirs: str = field(
        default="/usr/lib/postgresql/*/bin",
        metadata=_meta("BACKUP_PG_CLIENT_DIRS", "Globs (':'-separated) of client bin dirs."),
    )
    connect_timeout: int = field(
        default=10,
        metadata=_meta("PGCONNECT_TIMEOUT", "Seconds libpq waits for the server."),
    )
    databases: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "BACKUP_DATABASES", 'JSON list of databases, each its own artifact, e.g. ["a","b"].'
        ),
    )
    all_databases: bool = field(
        default=False,
        metadata=_meta("BACKUP_ALL_DATABASES", "true: every connectable non-template database."),
    )
    dump_globals: bool = field(
        default=False,
        metadata=_meta("BACKUP_GLOBALS", "true: also pg_dumpall --globals-only (roles, ...)."),
    )
    role_passwords: bool = field(
        default=False,
        metadata=_meta(
            "BACKUP_GLOBALS_ROLE_PASSWORDS", "true: keep role password hashes in the globals."
        ),
    )
    storage_kind: StorageKind = field(
        default=StorageKind.PVC,
        metadata=_meta("BACKUP_STORAGE_KIND", "pvc | s3 | gcs | azureBlob."),
    )
    bucket: Bucket | None = field(
        default=None,
        metadata=_meta(
            "BACKUP_BUCKET/BACKUP_OBJECT_PREFIX/BACKUP_OBJECT_ENDPOINT/BACKUP_S3_REGION/"
            "BACKUP_S3_PATH_STYLE/BACKUP_S3_SSE/BACKUP_S3_SSE_KMS_KEY_ID/BACKUP_S3_STORAGE_CLASS/"
            "BACKUP_S3_ROLE_ARN/BACKUP_S3_WEB_IDENTITY_TOKEN_FILE/BACKUP_AZURE_ACCOUNT/"
            "BACKUP_CREDENTIALS_DIR",
            "Object-storage target; credentials only as files in BACKUP_CREDENTIALS_DIR.",
        ),
    )
    object_timeout_seconds: float = field(
        default=60.0,
        metadata=_meta("BACKUP_OBJECT_TIMEOUT_SECONDS", "Per-request limit (also retry budget)."),
    )
    expected_size: int | None = field(
        default=None,
        metadata=_meta("BACKUP_EXPECTED_SIZE_BYTES", "Size the part size is planned for."),
    )
    age_recipients: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "BACKUP_AGE_RECIPIENTS/BACKUP_AGE_RECIPIENTS_FILE",
            "age public keys; set = every backup is encrypted.",
        ),
    )
    age_identity_file: Path | None = field(
        default=None,
        metadata=_meta("BACKUP_AGE_IDENTITY_FILE", "age identity (restore/verify only)."),
    )
    target: Target = field(
        default=Target(),
        metadata=_meta(
            "PGHOST/PGPORT/PGDATABASE/PGUSER/PGSSLMODE/PGPASSFILE",
            "Connection; or SESSION_/BACKUP_/DATABASE_URL[_FILE], first non-empty wins.",
        ),
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate; raises ConfigError naming the variable, never its value."""
        target, source = resolve_target(env)
        log.info("connection source chosen", extra={"event": "settings.source", "source": source})
        root = env.get("BACKUP_STORAGE_ROOT", "").strip()
        kind, bucket = parse_bucket(env)
        recipients = [env.get("BACKUP_AGE_RECIPIENTS", "")]
        recipients_file = env.get("BACKUP_AGE_RECIPIENTS_FILE", "").strip()
        if recipients_file:
            try:
                recipients.append(Path(recipients_file).read_text(encoding="utf-8")[: 1 << 20])
            except OSError as exc:
                raise ConfigError(
                    f"BACKUP_AGE_RECIPIENTS_FILE: cannot read it ({exc.strerror})"
                ) from None
        identity = env.get("BACKUP_AGE_IDENTITY_FILE", "").strip()
        expected = env.get("BACKUP_EXPECTED_SIZE_BYTES", "").strip()
        if expected and not expected.isdigit():
            raise ConfigError("BACKUP_EXPECTED_SIZE_BYTES: a whole number of bytes")
        prefix = env.get("BACKUP_PREFIX", "").strip() or "backup"
        if not re.fullmatch(PREFIX_PATTERN, prefix):
            raise ConfigError("BACKUP_PREFIX: use letters, digits, '.', '_' or '-'")
        return cls(
            storage_root=Path(root) if root else None,
            storage_subdir=parse_subdir(env.get("BACKUP_STORAGE_SUBDIR", "")),
            prefix=prefix,
            timeout_seconds=_number(env, "BACKUP_TIMEOUT_SECONDS", 300.0),
            kill_grace_seconds=_number(env, "BACKUP_KILL_GRACE_SECONDS", 5.0),
            format=_enum(env, "BACKUP_FORMAT", DumpFormat, DumpFormat.CUSTOM),
            compression=Compression.parse(env.get("BACKUP_COMPRESSION", "") or "zstd:3"),
            retention=Retention.parse(env.get("BACKUP_RETENTION", "") or str(Retention())),
            failed_retention_days=int(_number(env, "BACKUP_FAILED_RETENTION_DAYS", 14)),
            verify=_enum(env, "BACKUP_VERIFY", VerifyMode, VerifyMode.LIST),
            row_counts=_bool(env, "BACKUP_ROW_COUNTS", True),
            termination_log=Path(env.get("BACKUP_TERMINATION_LOG", "") or "/dev/termination-log"),
            tmpdir=Path(env.get("TMPDIR", "") or "/tmp"),  # noqa: S108
            client_dirs=env.get("BACKUP_PG_CLIENT_DIRS", "") or "/usr/lib/postgresql/*/bin",
            connect_timeout=int(_number(env, "PGCONNECT_TIMEOUT", 10)),
            storage_kind=kind,
            bucket=bucket,
            object_timeout_seconds=_number(env, "BACKUP_OBJECT_TIMEOUT_SECONDS", 60.0),
            expected_size=int(expected) if expected else None,
            age_recipients=parse_recipients(recipients),
            age_identity_file=Path(identity) if identity else None,
            target=target,
            **_selection(env),
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


def _selection(env: Mapping[str, str]) -> dict[str, Any]:
    """Which databases and whether globals: validated here, so a run never starts half-right."""
    databases = _database_list(env.get("BACKUP_DATABASES", "").strip())
    all_databases = _flag(env, "BACKUP_ALL_DATABASES")
    if databases and all_databases:
        raise ConfigError("BACKUP_DATABASES and BACKUP_ALL_DATABASES exclude each other")
    with_globals = _flag(env, "BACKUP_GLOBALS")
    role_passwords = _flag(env, "BACKUP_GLOBALS_ROLE_PASSWORDS")
    if role_passwords and not with_globals:
        raise ConfigError("BACKUP_GLOBALS_ROLE_PASSWORDS needs BACKUP_GLOBALS=true")
    return {
        "databases": databases,
        "all_databases": all_databases,
        "dump_globals": with_globals,
        "role_passwords": role_passwords,
    }


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


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in {"", "false", "0", "no"}:
        return False
    if text in {"true", "1", "yes"}:
        return True
    raise ConfigError(f"{name}: must be true or false")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: not a number") from None
    if value <= 0 and name != "BACKUP_FAILED_RETENTION_DAYS":
        raise ConfigError(f"{name}: must be > 0")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: must be true or false")


def _enum(env: Mapping[str, str], name: str, kind: type[_E], default: _E) -> _E:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        allowed = " | ".join(str(m.value) for m in kind)
        raise ConfigError(f"{name}: must be one of {allowed}") from None


def help_table() -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every setting; `--help` prints it."""
    rows: list[tuple[str, str, str]] = []
    for f in fields(Settings):
        default: Any = f.default
        shown = default.value if isinstance(default, enum.Enum) else default
        if isinstance(shown, bool):
            shown = "true" if shown else "false"
        elif shown == ():
            shown = None
        if f.name == "target":
            shown = "-"
        rows.append(
            (f.metadata["env"], str(shown if shown is not None else "-"), f.metadata["doc"])
        )
    return rows
