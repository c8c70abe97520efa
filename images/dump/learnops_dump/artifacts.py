"""What an artifact is, from its name alone (so restore works without a manifest)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import VerificationFailed
from .procs import Supervisor, tail
from .settings import DumpFormat

DECOMPRESS = {
    "zstd": ("zstd", "-d", "-q", "-c"),
    "lz4": ("lz4", "-d", "-q", "-c"),
    "gzip": ("gzip", "-d", "-c"),
}
_SUFFIX = {".zst": "zstd", ".lz4": "lz4", ".gz": "gzip"}


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: DumpFormat
    outer: str | None
    """Compression applied outside pg_dump (the file must be decompressed first)."""

    @classmethod
    def of(cls, path: Path) -> Artifact:
        outer = _SUFFIX.get(path.suffix)
        stem = path.name[: -len(path.suffix)] if outer else path.name
        if stem.endswith(".dir"):
            return cls(path, DumpFormat.DIRECTORY, None)
        if stem.endswith(".dump"):
            return cls(path, DumpFormat.CUSTOM, outer)
        if stem.endswith(".sql"):
            return cls(path, DumpFormat.PLAIN, outer)
        raise VerificationFailed(f"{path.name}: not a learnops artifact name")


@contextlib.contextmanager
def opened(sup: Supervisor, artifact: Artifact, env: dict[str, str]) -> Iterator[IO[bytes]]:
    """A readable stream of the artifact's pg_dump output (decompressing if needed)."""
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
            # pg_restore --list stops reading after the TOC; SIGPIPE is fine there
            # because `check_integrity` has already read the whole stream.
            if rc not in (0, -signal.SIGPIPE):
                err.seek(0)
                raise VerificationFailed(
                    f"{artifact.outer} -d exited with {rc}: {tail(err.read())}"
                )


def check_integrity(sup: Supervisor, artifact: Artifact, env: dict[str, str]) -> None:
    """Read the whole outer-compressed stream once (checksums, truncation)."""
    if artifact.outer is None:
        return
    tester = {"zstd": ("zstd", "-t", "-q"), "lz4": ("lz4", "-t", "-q"), "gzip": ("gzip", "-t")}
    rc, _, err = sup.run([*tester[artifact.outer.strip()], str(artifact.path)], env)
    if rc != 0:
        raise VerificationFailed(f"{artifact.path.name}: {artifact.outer} test failed: {err}")
