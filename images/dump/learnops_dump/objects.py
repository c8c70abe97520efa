"""Object storage (S3, GCS, Azure Blob) through obstore, behind the same surface as `Storage`.

obstore wraps the Rust `object_store` crate: one small native package for all three
clouds, streaming multipart uploads from a bounded buffer, and an abort on failure.
Nothing ever appears under a final name until the upload completes: a multipart
upload is invisible until CompleteMultipartUpload (Azure: until the block list is
committed; GCS: until the last part), and every failure path aborts it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol

import obstore
from obstore.store import AzureStore, GCSStore, S3Store

from .artifacts import MANIFEST_SUFFIX, split_name
from .buckets import (
    AZURE_KEY,
    AZURE_SAS,
    GCS_SERVICE_ACCOUNT,
    S3_KEY_ID,
    S3_SECRET,
    S3_TOKEN,
    Bucket,
    StorageKind,
    read_credential,
)
from .errors import ConfigError, StorageFailed
from .masking import mask, register_secret
from .partsize import MAX_PARTS, capacity

log = logging.getLogger(__name__)
# One part being filled plus this many in flight: memory is (1 + CONCURRENCY) x part size.
CONCURRENCY = 1
READ_CHUNK = 1 << 20
MAX_JSON_BYTES = 1 << 20


class Writer(Protocol):
    def write(self, buffer: bytes | memoryview, /) -> int: ...
    def close(self) -> None: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def failure(action: str, exc: Exception) -> StorageFailed:
    """A StorageFailed that says what went wrong, masked and bounded (never credentials)."""
    kind = type(exc).__name__
    text = " ".join(str(exc).split())[:600]
    hint = ""
    if "PermissionDenied" in kind or "403" in text or "Unauthenticated" in kind:
        hint = " (access denied: check the credentials and the bucket policy)"
    elif "quota" in text.lower() or "QuotaExceeded" in text or "EntityTooLarge" in text:
        hint = " (quota or size limit reached)"
    elif "NotFound" in kind:
        hint = " (not found)"
    return StorageFailed(mask(f"object storage: cannot {action}{hint}: {kind}: {text}"))


SEGMENT_SEP = ".seg-"
"""An artifact larger than one object continues in `<name>.seg-00002`, `.seg-00003` ..."""
_SEGMENT = re.compile(r"(.+)\.seg-(\d{5})")
MAX_SEGMENTS = 99_999
"""Five digits in a segment's name."""


def segment_name(name: str, index: int) -> str:
    """The object name of segment `index` (0: the artifact's own name)."""
    return name if index == 0 else f"{name}{SEGMENT_SEP}{index + 1:05d}"


class Upload:
    """A streaming upload of one artifact: `write()` chunks, then `commit()` or `abort()`.

    Each object takes at most `segment_bytes` (its part limit x the part size); the stream
    continues in segment objects. The artifact's own object is the first and is completed
    last, in `commit()`, so nothing is ever visible under its name before the whole dump is.
    A filled segment is completed at once (an open upload holds client memory, so at most
    two are open: memory stays bounded however many segments a dump takes); segments are
    not artifacts (listings fold them into theirs) and a failure deletes them again."""

    def __init__(
        self,
        open_writer: Callable[[str], Writer],
        delete: Callable[[str], None],
        name: str,
        key: Callable[[str], str],
        segment_bytes: int,
    ) -> None:
        self._open_writer = open_writer
        self._delete = delete
        self._name = name
        self._keyof = key
        self._segment_bytes = segment_bytes
        self.key = key(name)
        self._first = self._start(self.key)
        self._current: tuple[str, Writer] = (self.key, self._first)
        self._completed: list[str] = []
        self._room = segment_bytes
        self._open = True

    @property
    def segments(self) -> int:
        return 1 + len(self._completed) + (self._current[1] is not self._first)

    def _start(self, key: str) -> Writer:
        try:
            return self._open_writer(key)
        except Exception as exc:
            raise failure(f"start the upload of {key}", exc) from None

    def _finish_current(self) -> None:
        """Complete the current segment (never the artifact's own object)."""
        key, writer = self._current
        if writer is self._first:
            return
        try:
            writer.close()
        except Exception as exc:
            raise failure(f"complete the upload of {key}", exc) from None
        self._completed.append(key)
        self._current = (self.key, self._first)

    def _next(self) -> None:
        if self.segments >= MAX_SEGMENTS:  # 10 PB at the defaults; 1 TB at one part each
            raise StorageFailed(
                f"object storage: {self.key} would need more than {MAX_SEGMENTS} objects "
                "(raise BACKUP_OBJECT_SEGMENT_PARTS)"
            )
        self._finish_current()
        key = self._keyof(segment_name(self._name, self.segments))
        self._current = (key, self._start(key))
        self._room = self._segment_bytes

    def write(self, data: memoryview) -> None:
        while len(data):
            if self._room == 0:
                self._next()
            take = data[: self._room]
            key, writer = self._current
            # A copy: obstore may keep the buffer it is given (zero-copy), and the pipeline
            # reuses its read buffer for the next chunk.
            try:
                writer.write(bytes(take))
            except Exception as exc:
                raise failure(f"upload {key}", exc) from None
            self._room -= len(take)
            data = data[len(take) :]

    def commit(self) -> None:
        """Complete the last segment, then the artifact's own object: only now is it there."""
        try:
            self._finish_current()
        except StorageFailed:
            self.abort()
            raise
        self._open = False
        try:
            self._first.close()
        except Exception as exc:
            self._drop_segments()
            raise failure(f"complete the upload of {self.key}", exc) from None

    def abort(self) -> None:
        """Abort the open uploads and delete completed segments (best effort: the artifact's
        own object never became visible)."""
        if not self._open:
            return
        self._open = False
        key, writer = self._current
        if writer is not self._first:
            _abort(writer, key)
        _abort(self._first, self.key)
        self._drop_segments()

    def _drop_segments(self) -> None:
        for key in self._completed:
            try:
                self._delete(key)
            except Exception as exc:
                log.warning(
                    "could not delete a segment of a failed upload",
                    extra={"event": "objects.segment_cleanup_failed", "key": key,
                           "error": type(exc).__name__},
                )  # fmt: skip


def _abort(writer: Writer, key: str) -> None:
    try:
        writer.__exit__(RuntimeError, RuntimeError("aborted"), None)
    except Exception as exc:
        log.warning(
            "could not abort the upload",
            extra={"event": "objects.abort_failed", "key": key, "error": type(exc).__name__},
        )


class ObjectStorage:
    """One bucket + prefix. Names are file names below the prefix, like `Storage`'s."""

    def __init__(self, bucket: Bucket, request_timeout: float, prefix: str = "backup") -> None:
        self.bucket = bucket
        self.prefix = prefix
        """The run-name prefix (BACKUP_PREFIX) whose backups retention looks at."""
        self._store = open_store(bucket, request_timeout)

    # -- the Storage surface -------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.bucket.kind.value}://{self.bucket.bucket}/{self.bucket.prefix}"

    def location(self, name: str) -> dict[str, str]:
        where = {
            "kind": self.bucket.kind.value,
            "bucket": self.bucket.bucket,
            "key": self.key(name),
        }
        if segments := len(self.segments(name)):
            where["segments"] = str(segments + 1)
        return where

    def key(self, name: str) -> str:
        return self.bucket.key(name)

    def check(self) -> None:
        """Fail early, before connecting to the database, if the bucket cannot be listed."""
        try:
            stream = obstore.list(self._store, self.bucket.prefix or None, chunk_size=1)
            next(iter(stream), None)
        except Exception as exc:
            raise failure(f"list {self.describe()}", exc) from None

    def clean_leftovers(self) -> list[str]:
        """Nothing to do: failed uploads were aborted and never became objects."""
        return []

    def names(self) -> list[str]:
        """Artifact and document names directly below the prefix; an artifact's segment
        objects count as their artifact (so retention removes a failed run's leftovers)."""
        seen: dict[str, None] = {}
        for name in self._object_names():
            found = _SEGMENT.fullmatch(name)
            seen[found.group(1) if found else name] = None
        return list(seen)

    def segments(self, name: str) -> list[str]:
        """The segment objects that continue artifact `name`, in order."""
        found = [
            (int(m.group(2)), n)
            for n in self._object_names()
            if (m := _SEGMENT.fullmatch(n)) and m.group(1) == name
        ]
        return [n for _, n in sorted(found)]

    def _object_names(self) -> list[str]:
        prefix = self.bucket.prefix
        try:
            result = obstore.list_with_delimiter(self._store, prefix or None)
        except Exception as exc:
            raise failure(f"list {self.describe()}", exc) from None
        return [str(meta["path"])[len(prefix) :] for meta in result["objects"]]

    def exists(self, name: str) -> bool:
        try:
            obstore.head(self._store, self.key(name))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise failure(f"look up {self.key(name)}", exc) from None
        return True

    def unique_stem(self, stem: str) -> str:
        candidate, n = stem, 1
        while self.exists(f"{candidate}{MANIFEST_SUFFIX}"):
            candidate, n = f"{stem}-{n}", n + 1
        return candidate

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """One single-request PUT: atomic, so a reader sees the old or the new document."""
        body = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        try:
            obstore.put(self._store, self.key(name), body, use_multipart=False)
        except Exception as exc:
            raise failure(f"write {self.key(name)}", exc) from None

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            result = obstore.get(self._store, self.key(name))
            if result.meta["size"] > MAX_JSON_BYTES:
                return None
            data = json.loads(bytes(result.bytes()))
        except (FileNotFoundError, ValueError):
            return None
        except Exception as exc:
            raise failure(f"read {self.key(name)}", exc) from None
        return data if isinstance(data, dict) else None

    def remove(self, name: str) -> None:
        """Delete an object; for an artifact its own name first (so it no longer looks
        complete), then its segments."""
        segments = self.segments(name) if split_name(name) else []
        for each in [name, *segments]:
            try:
                obstore.delete(self._store, self.key(each))
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise OSError(f"cannot delete {self.key(each)}: {type(exc).__name__}") from None

    # -- streaming ------------------------------------------------------------------------
    @contextlib.contextmanager
    def upload(self, name: str, part: int, parts: int = MAX_PARTS) -> Iterator[Upload]:
        """An upload that commits only if the block finishes; any exception aborts it.
        Each object holds at most `parts` parts; beyond that the artifact is segmented."""
        attributes: dict[str, str] = {"Content-Type": "application/octet-stream"}
        if self.bucket.storage_class and self.bucket.kind is StorageKind.S3:
            attributes["Storage-Class"] = self.bucket.storage_class

        def open_writer(key: str) -> Writer:
            writer: Writer = obstore.open_writer(
                self._store, key, buffer_size=part, max_concurrency=CONCURRENCY,
                attributes=attributes,
            )  # fmt: skip
            return writer

        def delete(key: str) -> None:
            obstore.delete(self._store, key)

        upload = Upload(open_writer, delete, name, self.key, capacity(part, parts))
        try:
            yield upload
        except BaseException:
            upload.abort()
            raise
        upload.commit()

    def download(self, name: str) -> Iterator[bytes]:
        """The artifact's bytes (its segments' after its own) in chunks of about READ_CHUNK;
        StorageFailed on any error."""
        key = self.key(name)
        segments = self.segments(name) if split_name(name) else []
        try:
            for each in [name, *segments]:
                key = self.key(each)
                result = obstore.get(self._store, key)
                for chunk in result.stream(min_chunk_size=READ_CHUNK):
                    yield bytes(chunk)
        except FileNotFoundError:
            raise ConfigError(f"{key}: no such object in {self.describe()}") from None
        except Exception as exc:
            raise failure(f"read {key}", exc) from None


def open_store(bucket: Bucket, request_timeout: float) -> S3Store | GCSStore | AzureStore:
    """The obstore client for this target, credentials read from their files now."""
    timeout = timedelta(seconds=request_timeout)
    client: dict[str, Any] = {"timeout": timeout, "connect_timeout": timedelta(seconds=10)}
    if bucket.endpoint and bucket.endpoint.startswith("http://"):
        client["allow_http"] = True
    retry: dict[str, Any] = {
        "max_retries": 3,
        "retry_timeout": timeout,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    options: dict[str, Any] = {"client_options": client, "retry_config": retry}
    try:
        if bucket.kind is StorageKind.S3:
            return S3Store(bucket.bucket, config=_s3_config(bucket), **options)
        if bucket.kind is StorageKind.GCS:
            return GCSStore(bucket.bucket, config=_gcs_config(bucket), **options)
        return AzureStore(bucket.bucket, config=_azure_config(bucket), **options)
    except ConfigError:
        raise
    except Exception as exc:
        text = f"object storage configuration: {type(exc).__name__}: {exc}"
        raise ConfigError(mask(text)) from None


def _s3_config(bucket: Bucket) -> Any:
    config: dict[str, Any] = {
        "region": bucket.region or "us-east-1",
        "virtual_hosted_style_request": not bucket.path_style,
    }
    if bucket.endpoint:
        config["endpoint"] = bucket.endpoint
    if bucket.sse:
        config["server_side_encryption"] = bucket.sse
    if bucket.kms_key_id:
        config["sse_kms_key_id"] = bucket.kms_key_id
    key_id, secret = read_credential(bucket, S3_KEY_ID), read_credential(bucket, S3_SECRET)
    if key_id and secret:
        config["access_key_id"], config["secret_access_key"] = key_id, secret
        token = read_credential(bucket, S3_TOKEN)
        if token:
            config["session_token"] = token
    elif bucket.role_arn and bucket.web_identity_token_file:
        config["role_arn"] = bucket.role_arn
        config["web_identity_token_file"] = str(bucket.web_identity_token_file)
    else:
        raise ConfigError(
            f"s3 credentials: put {S3_KEY_ID} and {S3_SECRET} in BACKUP_CREDENTIALS_DIR, or set "
            "BACKUP_S3_ROLE_ARN and BACKUP_S3_WEB_IDENTITY_TOKEN_FILE"
        )
    return config


def _gcs_config(bucket: Bucket) -> Any:
    config: dict[str, Any] = {}
    account = read_credential(bucket, GCS_SERVICE_ACCOUNT)
    if account:
        try:
            parsed = json.loads(account)
        except ValueError:
            raise ConfigError(
                f"BACKUP_CREDENTIALS_DIR: {GCS_SERVICE_ACCOUNT} is not JSON"
            ) from None
        if isinstance(parsed, dict) and isinstance(parsed.get("private_key"), str):
            register_secret(parsed["private_key"])
        config["service_account_key"] = account
    if bucket.endpoint:
        config["base_url"] = bucket.endpoint
    # Without a key file the library uses the workload identity (metadata server).
    return config


def _azure_config(bucket: Bucket) -> Any:
    if not bucket.account:
        raise ConfigError("BACKUP_AZURE_ACCOUNT is required for azureBlob")
    config: dict[str, Any] = {"account_name": bucket.account}
    if bucket.endpoint:
        config["endpoint"] = f"{bucket.endpoint}/{bucket.account}"
    key, sas = read_credential(bucket, AZURE_KEY), read_credential(bucket, AZURE_SAS)
    if key:
        config["account_key"] = key
    elif sas:
        config["sas_key"] = sas
    # Neither: workload identity (federated token file from the environment) or managed identity.
    return config
