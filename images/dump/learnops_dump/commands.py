"""The `verify` and `restore` subcommands (the `run` subcommand is runner.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from .artifacts import Artifact
from .credentials import private_pgpass
from .digests import artifact_digest
from .errors import ConfigError, VerificationFailed
from .logs import event
from .procs import Supervisor, child_env
from .restore import restore_into
from .settings import Settings
from .storage import MANIFEST_SUFFIX
from .verify import artifact_path, verify_list
from .versions import Client, choose_client, installed_clients, probe_server

log = logging.getLogger(__name__)
_SUFFIXES = (".zst", ".lz4", ".gz", ".dump", ".sql", ".dir")


def check_against_manifest(artifact: Artifact) -> None:
    """The artifact's sha256 must match its manifest (if the manifest is beside it)."""
    stem = artifact.path.name
    for suffix in _SUFFIXES:
        stem = stem.removesuffix(suffix)
    manifest = artifact.path.with_name(stem + MANIFEST_SUFFIX)
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        event(log, "verify.no_manifest", "no readable manifest beside it; sha256 not checked")
        return
    if artifact_digest(artifact.path)[1] != expected:
        raise VerificationFailed(f"{artifact.path.name}: sha256 differs from its manifest")


def _locate(settings: Settings, name: str) -> tuple[Artifact, list[Client]]:
    artifact = Artifact.of(artifact_path(settings.storage_root, name))
    if not artifact.path.exists():
        raise ConfigError(f"{name}: no such artifact")
    clients = installed_clients(settings.client_dirs)
    if not clients:
        raise ConfigError("no PostgreSQL client found (BACKUP_PG_CLIENT_DIRS)")
    return artifact, clients


def verify_command(settings: Settings, name: str) -> int:
    """Checksum against the manifest, then the same checks a run does (no database)."""
    artifact, clients = _locate(settings, name)
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals():
        try:
            check_against_manifest(artifact)
            env = child_env({}, None, str(settings.tmpdir))
            entries = verify_list(sup, clients[-1], artifact, env)
        finally:
            sup.close()
    event(log, "verify.ok", "artifact verified", artifact=artifact.path.name, tocEntries=entries)
    return 0


def restore_command(
    settings: Settings, name: str, target_db: str, jobs: int, no_owner: bool
) -> int:
    """Restore into an existing database with the run's connection settings."""
    artifact, clients = _locate(settings, name)
    target = replace(settings.target, params=(*settings.target.params, ("PGDATABASE", target_db)))
    sup = Supervisor(settings.timeout_seconds, settings.kill_grace_seconds)
    with sup.handle_signals(), private_pgpass(target, settings.tmpdir) as passfile:
        try:
            check_against_manifest(artifact)
            params = dict(target.params)
            params.setdefault("PGCONNECT_TIMEOUT", str(settings.connect_timeout))
            env = child_env(params, str(passfile) if passfile else None, str(settings.tmpdir))
            server = probe_server(sup, clients[-1].tool("psql"), env)
            client = choose_client(clients, server.major)
            restore_into(sup, client, artifact, env, scratch=no_owner, jobs=jobs)
        finally:
            sup.close()
    event(log, "restore.ok", "artifact restored", artifact=artifact.path.name, database=target_db)
    return 0
