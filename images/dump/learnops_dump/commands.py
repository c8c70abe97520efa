"""The `verify` subcommand and what `restore` (restoring.py) shares with it: locating an artifact
in a PVC or a bucket, its globals script, the pg_dump major that wrote it."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import artifacts
from .artifacts import Artifact, manifest_for
from .buckets import StorageKind
from .encryption import decrypt_argv
from .errors import ConfigError, RunnerError
from .logs import event
from .procs import Supervisor, child_env
from .remote import verify_stored
from .roles import GLOBALS_SUFFIX, check_trailer
from .settings import Settings
from .storage import read_json_at
from .verify import (
    artifact_path,
    check_manifest,
    verify_archive,
)
from .versions import Client, installed_clients

if TYPE_CHECKING:
    from .objects import ObjectStorage

log = logging.getLogger(__name__)


def _locate(settings: Settings, name: str) -> tuple[Artifact, list[Client]]:
    root = settings.require_storage_root() if settings.storage_root is not None else None
    artifact = Artifact.of(artifact_path(root, name))
    if not artifact.path.exists():
        raise ConfigError(f"{name}: no such artifact")
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no PostgreSQL client found (BACKUP_PG_CLIENT_DIRS)")
    return artifact, clients


def written_by(manifest: dict[str, Any] | None) -> int:
    """The major of the pg_dump that wrote the archive (its manifest's clientVersion), or 0."""
    match = re.match(r"(\d+)", str((manifest or {}).get("clientVersion") or ""))
    return int(match.group(1)) if match else 0


def globals_path(artifact: Artifact) -> Path:
    """The globals artifact of the run that wrote `artifact` (from its run manifest)."""
    path = manifest_for(artifact.path)
    manifest = read_json_at(path) if path is not None else None
    entry = (manifest or {}).get("globals")
    name = entry.get("artifact") if isinstance(entry, dict) else None
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise ConfigError(f"--with-globals: {artifact.path.name}'s run has no globals artifact")
    found = artifact.path.with_name(name)
    if not found.is_file():
        raise ConfigError(f"--with-globals: {name}: no such artifact")
    return found


def verify_command(settings: Settings, name: str, *, force: bool = False) -> int:
    """Size and sha256 against the manifest, then every byte of the archive (no database)."""
    if settings.storage_kind is not StorageKind.PVC:
        return _verify_remote(settings, name)
    artifact, clients = _locate(settings, name)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    if artifact.path.name.endswith(GLOBALS_SUFFIX):  # a psql script, not a pg_restore archive
        check_manifest(sup, artifact, force=force)
        check_trailer(artifact.path)
        event(log, "verify.ok", "globals verified", artifact=artifact.path.name)
        return 0
    with sup.handle_signals():
        try:
            manifest = check_manifest(sup, artifact, force=force)
            env = child_env({}, None, str(settings.tmpdir))
            database = manifest.get("database") if manifest else None
            entries = verify_archive(
                sup, clients[-1], artifact, env, database if isinstance(database, str) else None
            )
        except RunnerError as exc:
            raise sup.as_stop(exc) from None
        finally:
            sup.close()
    event(log, "verify.ok", "artifact verified", artifact=artifact.path.name, tocEntries=entries)
    return 0


def remote_artifact(
    settings: Settings, name: str
) -> tuple[ObjectStorage, str, dict[str, Any] | None]:
    """The bucket, the artifact's name in it (`latest` = latest.json's) and its manifest."""
    from .objects import ObjectStorage  # only object-storage commands load the client

    assert settings.bucket is not None
    storage = ObjectStorage(settings.bucket, settings.object_timeout_seconds, settings.prefix)
    if name == "latest":
        pointer = artifacts.latest_name(settings.prefix)
        latest = storage.read_json(pointer)
        if not latest or not isinstance(latest.get("artifact"), str):
            raise ConfigError(f"no {pointer} in {storage.describe()} (BACKUP_PREFIX?)")
        name = latest["artifact"]
    if "/" in name or name.startswith("."):
        raise ConfigError(f"{name}: give the artifact's name below the prefix")
    parts = artifacts.split_name(name)
    if parts is None:
        raise ConfigError(f"{name}: not a learnops artifact name")
    manifest = storage.read_json(artifacts.manifest_name(parts[0]))
    if manifest is None:
        event(log, "verify.no_manifest", "no readable manifest beside it; sha256 not checked")
    return storage, name, manifest


def _clients(settings: Settings) -> list[Client]:
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no PostgreSQL client found (BACKUP_PG_CLIENT_DIRS)")
    return clients


def _verify_remote(settings: Settings, name: str) -> int:
    """Stream the object back: checksum, decrypt (identity file), decompress, read it all."""
    storage, name, manifest = remote_artifact(settings, name)
    artifact = Artifact.of(Path(name))
    if artifact.encrypted:
        decrypt_argv(
            settings.age_identity_file
        )  # verify promises the full read: no identity, no verify
    clients = _clients(settings)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals():
        try:
            env = child_env({}, None, str(settings.tmpdir))
            result = verify_stored(
                sup,
                clients[-1],
                storage.download(name),
                artifact,
                env,
                settings.age_identity_file,
                manifest,
            )
        finally:
            sup.close()
    event(log, "verify.ok", "artifact verified", artifact=name, **storage.location(name), **result)
    return 0
