"""pg_dump -> optional compressor -> a chunked reader that hashes, counts and writes.

The runner holds at most one 1 MiB buffer of dump data at a time, so its memory
stays flat whatever the database size. Every stage's exit status is recorded
and any non-zero one fails the run (no pipe hides a failed pg_dump).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .artifacts import TEMP_PREFIX, artifact_digest, extension
from .errors import ConfigError, DumpFailed, StorageFailed, TimedOut
from .procs import Supervisor, file_tail
from .settings import Compression, DumpFormat
from .storage import Storage

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
# pg_dump writes a few KiB at a time. Waking up for each piece costs CPU on both sides (the
# runner's CPU rose 15-20 % over a bare pg_dump), so after a small read the reader naps and
# lets the pipe fill. Only with the 1 MiB pipe: then pg_dump would have to produce more than
# 250 MB/s to fill it during a nap, and at such rates reads are large and nobody naps.
SMALL_READ = 64 << 10
NAP_SECONDS = 0.004
# pg_dump compresses lz4/zstd itself from this major on; gzip always.
NATIVE_LZ4_ZSTD_MAJOR = 16
EXTERNAL = {"zstd": ("zstd", "-q", "-c", "--no-progress"), "lz4": ("lz4", "-q", "-c")}


@dataclass(frozen=True)
class Plan:
    """How one dump is produced: pg_dump's arguments and an optional external stage."""

    format: DumpFormat
    dump_args: tuple[str, ...]
    compressor: tuple[str, ...] | None
    extension: str


@dataclass
class Stage:
    name: str
    exit_code: int | None = None


@dataclass
class Outcome:
    size: int = 0
    sha256: str = ""
    stages: list[Stage] = field(default_factory=list)


def make_plan(fmt: DumpFormat, compression: Compression, client_major: int) -> Plan:
    """Native compression where this pg_dump supports it, else an external stage."""
    algo, level = compression.algorithm, compression.level
    flag = {DumpFormat.CUSTOM: "c", DumpFormat.PLAIN: "p", DumpFormat.DIRECTORY: "d"}[fmt]
    compressor: tuple[str, ...] | None = None
    if algo == "none":
        z = "0"
    elif algo == "gzip":
        z = f"gzip:{level}" if client_major >= NATIVE_LZ4_ZSTD_MAJOR else str(level)
    elif client_major >= NATIVE_LZ4_ZSTD_MAJOR:
        z = f"{algo}:{level}"
    elif fmt is DumpFormat.DIRECTORY:
        raise ConfigError(
            f"BACKUP_COMPRESSION={algo} with BACKUP_FORMAT=directory needs pg_dump >= "
            f"{NATIVE_LZ4_ZSTD_MAJOR} (this one is {client_major}); use gzip or custom"
        )
    else:
        z = "0"
        compressor = (*EXTERNAL[algo], f"-{level}")
    ext = extension(fmt, algo, external=compressor is not None)
    return Plan(fmt, (f"-F{flag}", "-Z", z, "-w", "--no-sync"), compressor, ext)


def _enlarge_pipe(stream: IO[bytes] | None) -> bool:
    """Give the pipe 1 MiB (Linux); True if it has that much."""
    if stream is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return False
    with contextlib.suppress(OSError):
        return fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE) >= PIPE_SIZE
    return False


def stream_dump(
    sup: Supervisor,
    pg_dump: str,
    plan: Plan,
    env: dict[str, str],
    storage: Storage,
    final_name: str,
    tmpdir: Path,
    outcome: Outcome,
) -> None:
    """Run the pipeline into `.tmp-<final_name>`; fills `outcome`, raises on any failure."""
    with (
        tempfile.TemporaryFile(dir=tmpdir) as dump_err,
        tempfile.TemporaryFile(dir=tmpdir) as comp_err,
    ):
        if plan.format is DumpFormat.DIRECTORY:
            _dump_directory(sup, pg_dump, plan, env, storage, final_name, dump_err, outcome)
            return
        try:  # before any child starts: a failure here leaves nothing running
            fd = storage.create(f"{TEMP_PREFIX}{final_name}", replace_planted=True)
        except OSError as exc:
            raise StorageFailed(
                f"storage: cannot create the temporary artifact ({exc.strerror})"
            ) from None
        dump_stage, comp_stage = (
            Stage(Path(pg_dump).name),  # pg_dump, or pg_dumpall for the globals
            Stage(plan.compressor[0]) if plan.compressor else None,
        )
        outcome.stages.append(dump_stage)
        procs: list[tuple[Stage, subprocess.Popen[bytes]]] = []
        try:
            dump = sup.spawn(
                [pg_dump, *plan.dump_args], env, stdout=subprocess.PIPE, stderr=dump_err, bufsize=0
            )
        except OSError as exc:
            os.close(fd)
            raise DumpFailed(f"cannot start {dump_stage.name}: {exc.strerror}") from None
        except TimedOut:
            os.close(fd)
            raise
        procs.append((dump_stage, dump))
        roomy = _enlarge_pipe(dump.stdout)
        source = dump.stdout
        if comp_stage is not None and plan.compressor is not None:
            outcome.stages.append(comp_stage)
            try:
                comp = sup.spawn(
                    plan.compressor,
                    env,
                    stdin=dump.stdout,
                    stdout=subprocess.PIPE,
                    stderr=comp_err,
                    bufsize=0,
                )
            except (OSError, TimedOut) as exc:
                assert dump.stdout is not None
                dump.stdout.close()
                dump.kill()
                dump_stage.exit_code = sup.wait(dump)
                os.close(fd)
                if isinstance(exc, TimedOut):
                    raise
                raise DumpFailed(f"cannot start {comp_stage.name}: {exc.strerror}") from None
            procs.append((comp_stage, comp))
            assert dump.stdout is not None
            dump.stdout.close()  # the compressor owns it now; pg_dump sees EPIPE if it dies
            roomy = _enlarge_pipe(comp.stdout)
            source = comp.stdout
        assert source is not None
        storage_error: OSError | None = None
        try:
            outcome.size, outcome.sha256 = _copy(source, fd, nap=roomy)
        except OSError as exc:
            storage_error = exc
            for _, proc in procs:  # nobody reads any more: stop the producers now
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        finally:
            os.close(fd)
            source.close()
            for stage, proc in procs:
                stage.exit_code = sup.wait(proc)
        if storage_error is not None:
            raise StorageFailed(f"storage: cannot write the artifact ({storage_error.strerror})")
        sup.check()
        _raise_for_stages(outcome.stages, {"pg_dump": dump_err, "compressor": comp_err})


def _copy(source: IO[bytes], fd: int, *, nap: bool) -> tuple[int, str]:
    """Copy in up to CHUNK-sized pieces through one reused buffer; returns (size, sha256)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    read = source.fileno()
    while n := os.readv(read, [buf]):
        chunk = view[:n]
        digest.update(chunk)
        write_all(fd, chunk)
        size += n
        if nap and n < SMALL_READ:
            time.sleep(NAP_SECONDS)
    return size, digest.hexdigest()


def _dump_directory(
    sup: Supervisor,
    pg_dump: str,
    plan: Plan,
    env: dict[str, str],
    storage: Storage,
    final_name: str,
    dump_err: IO[bytes],
    outcome: Outcome,
) -> None:
    """pg_dump writes the directory itself; we hash its files afterwards, chunked."""
    stage = Stage("pg_dump")
    outcome.stages.append(stage)
    target = storage.make_dir(f"{TEMP_PREFIX}{final_name}")
    proc = sup.spawn(
        [pg_dump, *plan.dump_args, "-f", str(target)],
        env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=dump_err,
    )
    stage.exit_code = sup.wait(proc)
    sup.check()
    if stage.exit_code != 0 and _disk_full(dump_err):
        raise StorageFailed(
            f"storage: pg_dump could not write the directory ({_err_text(dump_err)})"
        )
    _raise_for_stages(outcome.stages, {"pg_dump": dump_err})
    try:
        outcome.size, outcome.sha256 = artifact_digest(target, sup.check)
    except OSError as exc:
        raise StorageFailed(f"storage: cannot read the dump directory ({exc.strerror})") from None


def write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _err_text(stream: IO[bytes]) -> str:
    return file_tail(stream)


def _disk_full(stream: IO[bytes]) -> bool:
    return "No space left on device" in _err_text(stream)


def _raise_for_stages(stages: list[Stage], errs: dict[str, IO[bytes]]) -> None:
    """One DumpFailed naming every failed stage (a dying compressor also kills pg_dump)."""
    failed = []
    for index, stage in enumerate(stages):
        if stage.exit_code != 0:
            err = errs["pg_dump"] if index == 0 else errs["compressor"]
            text = _err_text(err) or "no error output"
            failed.append(f"{stage.name} exited with {stage.exit_code}: {text}")
    if failed:
        raise DumpFailed("; ".join(failed))
