"""pg_dump -> [compressor] -> [age] -> a multipart upload, checked before it completes.

The runner reads the last stage's output in 1 MiB chunks, hashes and counts them, and
writes them into the upload. Every check (each stage's exit status, the deadline,
SIGTERM) happens inside the upload's block, so any failure aborts the upload instead
of completing it: nothing appears under a final name unless the whole dump succeeded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from .errors import DumpFailed, StorageFailed
from .pipeline import CHUNK, Outcome, Plan, Stage, _enlarge_pipe, _err_text
from .procs import Supervisor


class Sink(Protocol):
    def write(self, data: memoryview) -> None: ...


def stream_upload(
    sup: Supervisor,
    pg_dump: str,
    plan: Plan,
    encryptor: tuple[str, ...] | None,
    env: dict[str, str],
    upload: Callable[[], contextlib.AbstractContextManager[Sink]],
    tmpdir: Path,
    outcome: Outcome,
) -> None:
    """Run the stages into `upload()`; fills `outcome`, raises on any failure (aborting)."""
    argvs: list[tuple[str, tuple[str, ...]]] = [("pg_dump", (pg_dump, *plan.dump_args))]
    if plan.compressor is not None:
        argvs.append((plan.compressor[0], plan.compressor))
    if encryptor is not None:
        argvs.append((encryptor[0], encryptor))
    with contextlib.ExitStack() as stack:
        errs: dict[str, IO[bytes]] = {
            name: stack.enter_context(tempfile.TemporaryFile(dir=tmpdir)) for name, _ in argvs
        }
        procs: list[tuple[Stage, subprocess.Popen[bytes]]] = []
        try:
            source = _start(sup, argvs, env, errs, procs, outcome)
        except BaseException:
            _reap(sup, procs, kill=True)
            raise
        roomy = _enlarge_pipe(source)
        with upload() as sink:
            storage_error: StorageFailed | None = None
            try:
                outcome.size, outcome.sha256 = _copy(source, sink, nap=roomy)
            except StorageFailed as exc:
                storage_error = exc
                for _, proc in procs:  # nobody reads any more: stop the producers now
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            finally:
                source.close()
                _reap(sup, procs, kill=False)
            if storage_error is not None:
                raise storage_error
            sup.check()
            failed = [
                f"{s.name} exited with {s.exit_code}: {_err_text(errs[s.name]) or 'no output'}"
                for s in outcome.stages
                if s.exit_code != 0
            ]
            if failed:
                raise DumpFailed("; ".join(failed))


def _start(
    sup: Supervisor,
    argvs: list[tuple[str, tuple[str, ...]]],
    env: dict[str, str],
    errs: dict[str, IO[bytes]],
    procs: list[tuple[Stage, subprocess.Popen[bytes]]],
    outcome: Outcome,
) -> IO[bytes]:
    """Start every stage, each reading the previous one's stdout; returns the last stdout."""
    upstream: IO[bytes] | None = None
    for index, (name, argv) in enumerate(argvs):
        stage = Stage(name)
        outcome.stages.append(stage)
        try:
            proc = sup.spawn(
                list(argv),
                env,
                stdin=upstream if upstream is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errs[name],
                bufsize=0,
            )
        except OSError as exc:
            raise DumpFailed(f"cannot start {name}: {exc.strerror}") from None
        finally:
            if upstream is not None:
                upstream.close()  # the next stage owns it; its writer sees EPIPE if it dies
        procs.append((stage, proc))
        upstream = proc.stdout
        if index < len(argvs) - 1:
            _enlarge_pipe(upstream)
    assert upstream is not None
    return upstream


def _reap(
    sup: Supervisor, procs: list[tuple[Stage, subprocess.Popen[bytes]]], *, kill: bool
) -> None:
    for stage, proc in procs:
        if kill:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        stage.exit_code = sup.wait(proc)


def _copy(source: IO[bytes], sink: Sink, *, nap: bool) -> tuple[int, str]:
    """Copy in up to CHUNK-sized pieces through one reused buffer; returns (size, sha256)."""
    del nap  # uploads are large writes; the PVC path's small-read nap does not apply
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    read = source.fileno()
    while n := os.readv(read, [buf]):
        chunk = view[:n]
        digest.update(chunk)
        sink.write(chunk)
        size += n
    return size, digest.hexdigest()
