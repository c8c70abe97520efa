"""Artifact names and content: the one place that knows every suffix.

A run names its files here (`<prefix>-<UTC yyyymmddThhmmssZ>[-N]` plus a suffix), retention
and `verify`/`restore` read names back here (so an artifact says what it is without its
manifest), and the sha256/size a manifest records are computed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from .errors import VerificationFailed
from .procs import Supervisor, tail
from .settings import DumpFormat

MANIFEST_SUFFIX = ".manifest.json"
LATEST_SUFFIX = ".latest.json"
TEMP_PREFIX = ".tmp-"
LOCK_SUFFIX = ".lock"
STAMP = "%Y%m%dT%H%M%SZ"
# What pg_dump writes, by format; compression outside the archive adds an outer suffix.
BASE_SUFFIX = {DumpFormat.CUSTOM: ".dump", DumpFormat.PLAIN: ".sql", DumpFormat.DIRECTORY: ".dir"}
OUTER_SUFFIX = {"zstd": ".zst", "lz4": ".lz4", "gzip": ".gz"}
AGE_SUFFIX = ".age"
"""Encrypted with age (object storage): decrypt before anything else."""
DECOMPRESS = {
    "zstd": ("zstd", "-d", "-q", "-c"),
    "lz4": ("lz4", "-d", "-q", "-c"),
    "gzip": ("gzip", "-d", "-c"),
}
# Every suffix an artifact may carry (reading accepts more than a run writes, e.g. .dump.gz).
SUFFIXES = (
    BASE_SUFFIX[DumpFormat.DIRECTORY],
    *(
        base + outer
        for base in (BASE_SUFFIX[DumpFormat.CUSTOM], BASE_SUFFIX[DumpFormat.PLAIN])
        for outer in ("", *OUTER_SUFFIX.values())
    ),
)
SUFFIXES = (
    *SUFFIXES,
    *(s + AGE_SUFFIX for s in SUFFIXES if s != BASE_SUFFIX[DumpFormat.DIRECTORY]),
)
CHUNK = 1 << 20


def extension(fmt: DumpFormat, algorithm: str, *, external: bool) -> str:
    """The suffix of an artifact: a plain script is a compressed stream whoever compresses it;
    a custom archive only carries an outer suffix when an external compressor wrapped it."""
    ext = BASE_SUFFIX[fmt]
    if algorithm in OUTER_SUFFIX and (external or fmt is DumpFormat.PLAIN):
        ext += OUTER_SUFFIX[algorithm]
    return ext


def stem_pattern(prefix: str) -> str:
    """Exactly this prefix's run names: prefix `nightly` never matches `nightly-eu-…`."""
    return rf"{re.escape(prefix)}-(\d{{8}}T\d{{6}}Z)(?:-([1-9]\d{{0,5}}))?"


def stem_for(prefix: str, started: datetime, n: int) -> str:
    stem = f"{prefix}-{started.astimezone(UTC):{STAMP}}"
    return f"{stem}-{n}" if n else stem


def stem_order(prefix: str, stem: str) -> tuple[str, int] | None:
    """Start order of two runs of one prefix (time, then the same-second counter)."""
    match = re.fullmatch(stem_pattern(prefix), stem)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 0)


def split_name(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of an artifact name, or None if it is not one."""
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return None


# A part of a run (one of several databases, or the globals): `<stem>.<label><suffix>`.
_PART = re.compile(r"(.+-\d{8}T\d{6}Z(?:-[1-9]\d{0,5})?)\.([A-Za-z0-9_-]{1,63})")
GLOBALS_LABEL = "globals"
GLOBALS_MANIFEST = f".{GLOBALS_LABEL}{MANIFEST_SUFFIX}"


def run_stem(name: str) -> str | None:
    """The run an artifact name belongs to (a part's too), or None if it is not one."""
    if name.endswith(GLOBALS_MANIFEST):
        return name.removesuffix(GLOBALS_MANIFEST)
    parts = split_name(name)
    if parts is None:
        return None
    match = _PART.fullmatch(parts[0])
    return match.group(1) if match else parts[0]


def artifact_of(stem: str, name: str) -> bool:
    """True if `name` is an artifact name of run `stem` (and of nothing else)."""
    return run_stem(name) == stem


def manifest_name(stem: str) -> str:
    return stem + MANIFEST_SUFFIX


def latest_name(prefix: str) -> str:
    return prefix + LATEST_SUFFIX


def lock_name(prefix: str) -> str:
    return f".{prefix}{LOCK_SUFFIX}"


def manifest_for(artifact: Path) -> Path | None:
    """The manifest that belongs beside an artifact, from its name."""
    stem = run_stem(artifact.name)
    return None if stem is None else artifact.with_name(manifest_name(stem))


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: DumpFormat
    outer: str | None
    """Compression applied outside pg_dump (the file must be decompressed first)."""
    encrypted: bool = False
    """Encrypted with age (`.age`): decrypt before anything else."""

    @classmethod
    def of(cls, path: Path) -> Artifact:
        parts = split_name(path.name)
        if parts is None:
            raise VerificationFailed(f"{path.name}: not a learnops artifact name")
        encrypted = parts[1].endswith(AGE_SUFFIX)
        suffix = parts[1].removesuffix(AGE_SUFFIX)
        for fmt, base in BASE_SUFFIX.items():
            if suffix.startswith(base):
                outer = next((a for a, s in OUTER_SUFFIX.items() if suffix == base + s), None)
                return cls(path, fmt, outer, encrypted)
        raise VerificationFailed(f"{path.name}: not a learnops artifact name")


@contextlib.contextmanager
def opened(sup: Supervisor, artifact: Artifact, env: dict[str, str]) -> Iterator[IO[bytes]]:
    """A readable stream of the artifact's pg_dump output (decompressing if needed).

    The decompressor's exit status counts: a stream that stops early or fails its checksum
    raises VerificationFailed when the block ends (a reader stopping early is told by
    SIGPIPE, which only the TOC listing may cause).
    """
    with open(artifact.path, "rb", buffering=0) as raw:
        if artifact.outer is None:
            yield raw
            return
        with tempfile.TemporaryFile(dir=env.get("TMPDIR")) as err:
            proc = sup.spawn(
                DECOMPRESS[artifact.outer], env, stdin=raw, stdout=subprocess.PIPE, stderr=err
            )
            assert proc.stdout is not None
            try:
                yield proc.stdout
            finally:
                proc.stdout.close()
                rc = sup.wait(proc)
            sup.check()
            if rc not in (0, -signal.SIGPIPE):
                err.seek(0)
                raise VerificationFailed(
                    f"{artifact.path.name}: {artifact.outer} -d exited with {rc}: "
                    f"{tail(err.read())}"
                )


def _feed(digest: hashlib._Hash, fd: int, buf: bytearray, check: Callable[[], None]) -> int:
    size = 0
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(buf):
            digest.update(memoryview(buf)[:n])
            size += n
            check()
    return size


def artifact_digest(
    path: Path, check: Callable[[], None] = lambda: None, *, dir_fd: int | None = None
) -> tuple[int, str]:
    """What the manifest's sizeBytes/sha256 record: the file's bytes, or for a directory
    the sha256 over (relative name, NUL, content) of every file, sorted. Symbolic links are
    never followed (a planted one fails the digest); `check` runs between chunks."""
    buf = bytearray(CHUNK)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    top = os.open(path, flags, dir_fd=dir_fd)
    try:
        if not stat.S_ISDIR(os.fstat(top).st_mode):
            digest = hashlib.sha256()
            return _feed(digest, top, buf, check), digest.hexdigest()
        rels: list[str] = []
        for rel_dir, _dirs, names, _dfd in os.fwalk(".", dir_fd=top):
            rels += [Path(os.path.normpath(os.path.join(rel_dir, n))).as_posix() for n in names]
        digest, size = hashlib.sha256(), 0
        for rel in sorted(rels):
            fd = os.open(rel, flags, dir_fd=top)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                digest.update(rel.encode() + b"\0")
                size += _feed(digest, fd, buf, check)
            finally:
                os.close(fd)
        return size, digest.hexdigest()
    finally:
        os.close(top)
