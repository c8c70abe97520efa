"""Where `restore` and `drill` take an artifact from: a PVC file or a bucket object.

One place decides how the bytes reach pg_restore, so a drill proves exactly the path a restore
takes: a plain PVC archive is read by pg_restore itself (parallel jobs possible); a bucket object
(or an encrypted file) streams in, decrypted and decompressed on the way, one transaction, its
sha256 checked before the last chunk is let through (targets.load_stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import artifacts
from .artifacts import Artifact
from .buckets import StorageKind
from .commands import remote_artifact
from .encryption import decrypt_argv
from .errors import ConfigError
from .outcome import RunSummary
from .procs import Supervisor
from .settings import Settings
from .storage import read_json_at
from .targets import LoadOptions, load, load_stream
from .verify import check_manifest, check_stored_manifest
from .versions import Client

if TYPE_CHECKING:
    from .objects import ObjectStorage

CHUNK_BYTES = 1 << 20  # an encrypted PVC artifact is read in these for age -d


@dataclass(frozen=True)
class Source:
    artifact: Artifact
    manifest: dict[str, Any] | None
    """Checked against the artifact (PVC: size and sha256; bucket: records it as good); None
    only when forced."""
    bucket: ObjectStorage | None = None
    """The bucket the artifact streams from; None: a file in the PVC."""

    @property
    def name(self) -> str:
        return self.artifact.path.name


def resolve(storage_root: Path, prefix: str, name: str) -> Artifact:
    """The artifact in a PVC; `latest` reads `<prefix>.latest.json`."""
    if name == "latest":
        latest = read_json_at(storage_root / artifacts.latest_name(prefix))
        chosen = (latest or {}).get("artifact")
        if not isinstance(chosen, str) or not chosen:
            raise ConfigError(
                f"{artifacts.latest_name(prefix)} names no artifact: no successful backup of "
                f"prefix {prefix!r} in this storage"
            )
        name = chosen
    if "/" in name or name.startswith(".") or name in ("", ".."):
        raise ConfigError(f"{name!r} is not an artifact name")
    artifact = Artifact.of(storage_root / name)
    if not artifact.path.exists():
        raise ConfigError(f"{name}: no such artifact in the storage")
    return artifact


def open_source(
    settings: Settings, sup: Supervisor, name: str, *, force: bool, summary: RunSummary
) -> Source:
    """The artifact (a name or `latest`) and its checked manifest, from the configured storage.
    The summary names the artifact (and the object's location) as soon as it is resolved, so a
    failed check still says which artifact failed it. An encrypted artifact without an identity
    file is refused here, before any target is touched."""
    if settings.storage_kind is StorageKind.PVC:
        artifact = resolve(settings.require_storage_root(), settings.prefix, name)
        summary.artifact = artifact.path.name
        source = Source(artifact, check_manifest(sup, artifact, force=force))
    else:
        bucket, key, manifest = remote_artifact(settings, name)
        summary.artifact = Path(key).name
        summary.extra["location"] = bucket.location(Path(key).name)
        checked = check_stored_manifest(key, manifest, force=force)
        source = Source(Artifact.of(Path(key)), checked, bucket)
    if source.artifact.encrypted:
        decrypt_argv(settings.age_identity_file)
    return source


def load_source(
    sup: Supervisor,
    client: Client,
    source: Source,
    env: dict[str, str],
    options: LoadOptions,
    identity: Path | None,
) -> int:
    """pg_restore the source into env's database; returns the parallel jobs used."""
    artifact = source.artifact
    if source.bucket is None and not artifact.encrypted:
        return load(sup, client, artifact, env, options)
    chunks = (
        _file_chunks(artifact.path)
        if source.bucket is None
        else source.bucket.download(source.name)
    )
    expected = (source.manifest or {}).get("sha256")
    return load_stream(sup, client, chunks, artifact, env, options, identity, expected)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk
