"""Verify and restore an artifact by streaming its stored bytes back (no local copy).

Verification: the stored bytes' sha256 and size must match the manifest; with the
identity (or unencrypted) the stream is decrypted, decompressed and read *whole*:
pg_restore --list reads the table of contents, the rest is read to the end so age's
per-chunk authentication and zstd's checksum cover every byte. Without the identity
an encrypted artifact is checked for its checksum and its age header only.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .artifacts import Artifact
from .encryption import HEADER
from .errors import VerificationFailed
from .procs import Supervisor, tail
from .settings import DumpFormat
from .streams import decoded, decoders
from .verify import PLAIN_TRAILER, TAIL_BYTES
from .versions import Client

BLOCK = 1 << 20


def _peek(chunks: Iterable[bytes], seen: list[bytes]) -> Iterator[bytes]:
    """Pass chunks through, keeping the first one (for the age header check)."""
    for chunk in chunks:
        if not seen:
            seen.append(chunk[:64])
        yield chunk


def check_sums(name: str, size: int, sha256: str, expected: dict[str, Any] | None) -> None:
    if expected is None:
        return
    if expected.get("sha256") and expected.get("sha256") != sha256:
        raise VerificationFailed(f"{name}: sha256 differs from its manifest")
    if isinstance(expected.get("sizeBytes"), int) and expected["sizeBytes"] != size:
        raise VerificationFailed(f"{name}: size {size} differs from its manifest")


def verify_stored(
    sup: Supervisor,
    client: Client,
    chunks: Iterable[bytes],
    artifact: Artifact,
    env: dict[str, str],
    identity: Path | None,
    expected: dict[str, Any] | None,
) -> dict[str, Any]:
    """One pass over the stored bytes; returns the verification record for the manifest."""
    name = artifact.path.name
    if artifact.encrypted and identity is None:
        first: list[bytes] = []
        with decoded(sup, _peek(chunks, first), [], env) as feed:
            while feed.stdout.read(BLOCK):
                pass
        check_sums(name, feed.size, feed.sha256, expected)
        if not first or not first[0].startswith(HEADER):
            raise VerificationFailed(f"{name}: not an age-encrypted file")
        return {"mode": "checksum", "encrypted": True, "sha256": feed.sha256}
    entries = 0
    with decoded(sup, chunks, decoders(artifact, identity), env) as feed:
        if artifact.format is DumpFormat.PLAIN:
            end = b""
            while block := feed.stdout.read(BLOCK):
                end = (end + block)[-TAIL_BYTES:]
            if PLAIN_TRAILER not in end:
                raise VerificationFailed(f"{name}: the SQL script is incomplete")
        else:
            entries = _list_and_drain(sup, client, feed.stdout, env, name)
    check_sums(name, feed.size, feed.sha256, expected)
    return {"mode": "list", "tocEntries": entries, "encrypted": artifact.encrypted}


def _list_and_drain(
    sup: Supervisor, client: Client, stream: Any, env: dict[str, str], name: str
) -> int:
    """Feed pg_restore --list until it has the TOC, then read the rest to the end."""
    proc = sup.spawn(
        [client.tool("pg_restore"), "--list"],
        env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    out = proc.stdout
    lines: list[bytes] = []

    def collect() -> None:
        lines.extend(out)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    listening = True
    while block := stream.read(BLOCK):
        if listening:
            try:
                proc.stdin.write(block)
            except BrokenPipeError:
                listening = False  # it has read the TOC; keep reading for the full check
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    rc = sup.wait(proc)
    reader.join()
    sup.check()
    entries = sum(1 for line in lines if line.strip() and not line.startswith(b";"))
    if rc != 0 or entries == 0:
        last = lines[-1] if lines else b""
        raise VerificationFailed(f"{name}: pg_restore --list exited with {rc}: {tail(last)}")
    return entries
