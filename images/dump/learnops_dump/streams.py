"""Read a stored artifact back as a stream: stored bytes -> [age -d] -> [zstd -d] -> consumer.

A pump thread feeds the stored bytes (an object download, in chunks) into the first
decoder while hashing them, so the checksum and the full read of the archive happen
in one pass with no local copy. Every decoder's exit status is checked; a wrong age
identity fails here with age's own words.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .artifacts import DECOMPRESS, Artifact
from .encryption import decrypt_argv
from .errors import RunnerError, VerificationFailed
from .procs import Supervisor, tail

JOIN_SECONDS = 30


@dataclass
class Feed:
    """The decoded stream plus what the pump saw of the stored bytes."""

    stdout: IO[bytes]
    name: str = "the artifact"
    size: int = 0
    sha256: str = ""
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def decoders(artifact: Artifact, identity: Path | None) -> list[tuple[str, ...]]:
    """The argv of each decoding stage, outermost first."""
    stages: list[tuple[str, ...]] = []
    if artifact.encrypted:
        stages.append(decrypt_argv(identity))
    if artifact.outer is not None:
        stages.append(DECOMPRESS[artifact.outer])
    return stages


def _pump(
    chunks: Iterable[bytes], sink: IO[bytes], feed: Feed, expected_sha256: str | None
) -> None:
    digest = hashlib.sha256()
    held = b""  # with an expected digest, the last chunk waits until the digest is known
    try:
        for chunk in chunks:
            digest.update(chunk)
            feed.size += len(chunk)
            if expected_sha256 is None:
                sink.write(chunk)
                continue
            if held:
                sink.write(held)
            held = chunk
        if expected_sha256 is not None:
            if digest.hexdigest() != expected_sha256:
                # the consumer sees a truncated stream and fails (a single-transaction restore
                # rolls back): bytes that are not the backup never complete a restore
                raise VerificationFailed(f"{feed.name}: sha256 differs from its manifest")
            sink.write(held)
    except BrokenPipeError:
        pass  # a consumer stopped early; its exit status says why
    except BaseException as exc:  # a storage error: re-raised in the main thread
        feed.error = exc
    finally:
        feed.sha256 = digest.hexdigest()
        with contextlib.suppress(OSError):
            sink.close()
        feed.done.set()


@contextlib.contextmanager
def decoded(
    sup: Supervisor,
    chunks: Iterable[bytes],
    stages: list[tuple[str, ...]],
    env: dict[str, str],
    *,
    name: str = "the artifact",
    expected_sha256: str | None = None,
) -> Iterator[Feed]:
    """Yield the decoded stream; on exit every stage must have succeeded.

    With `expected_sha256` the stored bytes' digest is checked before their last chunk goes
    on: a mismatch ends the stream short and raises VerificationFailed, so a consumer never
    reads to the end of bytes that are not the backup.
    """
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
    err: IO[bytes]
    with contextlib.ExitStack() as stack:
        if not stages:
            read_fd, write_fd = os.pipe()
            first_in: IO[bytes] = open(write_fd, "wb", buffering=0)  # noqa: SIM115
            stdout: IO[bytes] = open(read_fd, "rb", buffering=0)  # noqa: SIM115
        else:
            upstream: IO[bytes] | int = subprocess.PIPE
            first: IO[bytes] | None = None
            for argv in stages:
                err = stack.enter_context(tempfile.TemporaryFile(dir=env.get("TMPDIR")))
                proc = sup.spawn(
                    list(argv), env, stdin=upstream, stdout=subprocess.PIPE, stderr=err
                )
                if first is None:
                    assert proc.stdin is not None
                    first = proc.stdin
                elif not isinstance(upstream, int):
                    upstream.close()
                procs.append((argv[0], proc, err))
                assert proc.stdout is not None
                upstream = proc.stdout
            assert first is not None
            assert not isinstance(upstream, int)
            first_in, stdout = first, upstream
        feed = Feed(stdout, name)
        pump = threading.Thread(
            target=_pump, args=(chunks, first_in, feed, expected_sha256), daemon=True
        )
        pump.start()
        body_error: VerificationFailed | None = None
        try:
            yield feed
        except VerificationFailed as exc:  # the consumer failed: maybe because a decoder did
            body_error = exc
        finally:
            with contextlib.suppress(OSError):
                stdout.close()
            if not feed.done.wait(JOIN_SECONDS if not sup.stopped else 1):
                for _, proc, _ in procs:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            codes = [(name, sup.wait(proc), err) for name, proc, err in procs]
        sup.check()
        if feed.error is not None:
            if isinstance(feed.error, RunnerError):
                raise feed.error
            raise VerificationFailed(f"reading the artifact failed: {type(feed.error).__name__}")
        # A decoder's own failure (a wrong age identity, a corrupt frame) is the cause; a
        # SIGPIPE only means the consumer stopped reading first.
        for name, rc, err in codes:
            if rc != 0 and not (body_error is not None and rc == -signal.SIGPIPE):
                err.seek(0)
                raise VerificationFailed(f"{name} exited with {rc}: {tail(err.read())}")
        if body_error is not None:
            raise body_error
