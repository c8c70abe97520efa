"""sha256 and size of an artifact (a file, or a directory-format dump), read in chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def _feed(digest: hashlib._Hash, path: Path, buf: bytearray) -> int:
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(memoryview(buf)[:n])
            size += n
    return size


def tree_digest(root: Path) -> tuple[int, str]:
    """Total size and sha256 over (relative name, NUL, content) of every file, sorted."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        size += _feed(digest, path, buf)
    return size, digest.hexdigest()


def artifact_digest(path: Path) -> tuple[int, str]:
    """What the manifest's sizeBytes/sha256 record for this artifact."""
    if path.is_dir():
        return tree_digest(path)
    digest = hashlib.sha256()
    size = _feed(digest, path, bytearray(CHUNK))
    return size, digest.hexdigest()
