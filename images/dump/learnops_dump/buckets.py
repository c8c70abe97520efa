"""Where an object-storage backup goes: one S3, GCS or Azure Blob target, from the environment.

Only names, endpoints and file *paths* come from variables. Credentials are read
from files in BACKUP_CREDENTIALS_DIR (a Secret volume) when the store is opened,
registered with the masker and handed to the client library in memory: never to
a child's environment, argv, a log line or a manifest.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .masking import register_secret

MAX_CREDENTIAL_BYTES = 64 << 10
# The files a credentials Secret may hold (its keys), per kind.
S3_KEY_ID, S3_SECRET, S3_TOKEN = "accessKeyId", "secretAccessKey", "sessionToken"
GCS_SERVICE_ACCOUNT = "serviceAccount.json"
AZURE_KEY, AZURE_SAS = "accountKey", "sasToken"
SSE_MODES = ("AES256", "aws:kms")
# Folder inside the bucket: plain path segments, no '..', no leading '/'.
OBJECT_PREFIX = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,100}/){0,8}")


class StorageKind(enum.Enum):
    PVC = "pvc"
    S3 = "s3"
    GCS = "gcs"
    AZURE = "azureBlob"


@dataclass(frozen=True)
class Bucket:
    """One object-storage target (no secrets: those stay in files until the store opens)."""

    kind: StorageKind
    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False
    sse: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    account: str | None = None
    credentials_dir: Path | None = None
    role_arn: str | None = None
    web_identity_token_file: Path | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def bucket_name_problem(kind: StorageKind, name: str) -> str | None:
    """Why `name` is not a valid bucket/container name for `kind` (None if it is)."""
    if kind is StorageKind.AZURE:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]", name):
            return "3-63 lowercase letters, digits and single hyphens, starting with a letter/digit"
        return None
    allowed = r"[a-z0-9._-]" if kind is StorageKind.GCS else r"[a-z0-9.-]"
    if not re.fullmatch(rf"[a-z0-9]{allowed}{{1,61}}[a-z0-9]", name):
        return "3-63 lowercase letters, digits, '.' or '-', starting and ending with one of a-z0-9"
    if ".." in name or ".-" in name or "-." in name:
        return "no '..', '.-' or '-.'"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return "must not look like an IP address"


def parse_storage_kind(name: str, text: str) -> StorageKind:
    try:
        return StorageKind(text)
    except ValueError:
        allowed = " | ".join(k.value for k in StorageKind)
        raise ConfigError(f"{name}: must be one of {allowed}") from None


def parse_bucket(env: Mapping[str, str], kind: StorageKind) -> Bucket | None:
    """For object storage, its target (None for a PVC); ConfigError names the variable."""
    if kind is StorageKind.PVC:
        return None
    name = env.get("BACKUP_BUCKET", "").strip()
    if not name:
        raise ConfigError("BACKUP_BUCKET is required for object storage")
    problem = bucket_name_problem(kind, name)
    if problem:
        raise ConfigError(f"BACKUP_BUCKET: not a valid {kind.value} name ({problem})")
    prefix = env.get("BACKUP_OBJECT_PREFIX", "").strip()
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not OBJECT_PREFIX.fullmatch(prefix):
        raise ConfigError("BACKUP_OBJECT_PREFIX: use path segments of letters, digits, . _ -")
    sse = env.get("BACKUP_S3_SSE", "").strip() or None
    if sse is not None and sse not in SSE_MODES:
        raise ConfigError("BACKUP_S3_SSE: must be AES256 or aws:kms")
    kms = env.get("BACKUP_S3_SSE_KMS_KEY_ID", "").strip() or None
    if kms and sse != "aws:kms":
        raise ConfigError("BACKUP_S3_SSE_KMS_KEY_ID needs BACKUP_S3_SSE=aws:kms")
    endpoint = env.get("BACKUP_OBJECT_ENDPOINT", "").strip() or None
    if endpoint and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(?::\d+)?/?", endpoint):
        raise ConfigError("BACKUP_OBJECT_ENDPOINT: must be http(s)://host[:port]")
    creds = env.get("BACKUP_CREDENTIALS_DIR", "").strip()
    token = env.get("BACKUP_S3_WEB_IDENTITY_TOKEN_FILE", "").strip()
    return Bucket(
        kind=kind,
        bucket=name,
        prefix=prefix,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        region=env.get("BACKUP_S3_REGION", "").strip() or None,
        path_style=env.get("BACKUP_S3_PATH_STYLE", "").strip().lower() in {"1", "true", "yes"},
        sse=sse,
        kms_key_id=kms,
        storage_class=env.get("BACKUP_S3_STORAGE_CLASS", "").strip() or None,
        account=env.get("BACKUP_AZURE_ACCOUNT", "").strip() or None,
        credentials_dir=Path(creds) if creds else None,
        role_arn=env.get("BACKUP_S3_ROLE_ARN", "").strip() or None,
        web_identity_token_file=Path(token) if token else None,
    )


def read_credential(bucket: Bucket, name: str) -> str | None:
    """One credential file's content (stripped), registered with the masker; None if absent."""
    if bucket.credentials_dir is None:
        return None
    path = bucket.credentials_dir / name
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CREDENTIAL_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"BACKUP_CREDENTIALS_DIR: cannot read {name} ({exc.strerror})") from None
    if len(data) > MAX_CREDENTIAL_BYTES:
        raise ConfigError(f"BACKUP_CREDENTIALS_DIR: {name} is larger than 64 KiB")
    value = data.decode("utf-8", "replace").strip()
    if name.endswith(".json"):
        return value  # the key inside is masked by the library; never logged by us
    register_secret(value)
    return value or None
