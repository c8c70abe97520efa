"""The pipeline counts every stage (no hidden pipefail), hashes on the fly, honours the deadline."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from learnops_dump.errors import DumpFailed, TimedOut
from learnops_dump.pipeline import Outcome, Plan, stream_dump
from learnops_dump.procs import Supervisor, child_env
from learnops_dump.settings import DumpFormat
from learnops_dump.storage import Storage


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _run(
    tmp_path: Path, producer: str, compressor: tuple[str, ...] | None, timeout: float = 30
) -> tuple[Outcome, Path]:
    storage_dir = tmp_path / "storage"
    storage_dir.mkdir(exist_ok=True)
    plan = Plan(DumpFormat.CUSTOM, (), compressor, ".dump")
    sup = Supervisor(timeout, kill_grace_seconds=1)
    outcome = Outcome()
    env = child_env({}, None, str(tmp_path))
    try:
        stream_dump(
            sup, producer, plan, env, Storage(storage_dir, "a"), "a.dump", tmp_path, outcome
        )
    finally:
        sup.close()
    return outcome, storage_dir / ".tmp-a.dump"


def test_size_and_sha256_are_those_of_the_written_bytes(tmp_path: Path) -> None:
    producer = _script(tmp_path, "pg_dump", "head -c 3000000 /dev/urandom")
    outcome, temp = _run(tmp_path, producer, ("cat",))
    data = temp.read_bytes()
    assert outcome.size == len(data) == 3000000
    assert outcome.sha256 == hashlib.sha256(data).hexdigest()
    assert [(s.name, s.exit_code) for s in outcome.stages] == [("pg_dump", 0), ("cat", 0)]


def test_a_failing_compressor_fails_the_run_although_pg_dump_succeeded(tmp_path: Path) -> None:
    producer = _script(tmp_path, "pg_dump", "echo data; exit 0")
    with pytest.raises(DumpFailed, match="sh exited with 3"):
        _run(tmp_path, producer, ("sh", "-c", "cat >/dev/null; echo broken >&2; exit 3"))


def test_a_failing_pg_dump_fails_the_run_although_the_compressor_succeeded(tmp_path: Path) -> None:
    producer = _script(tmp_path, "pg_dump", "echo partial; echo 'pg_dump: error: boom' >&2; exit 1")
    with pytest.raises(DumpFailed, match=r"pg_dump exited with 1: pg_dump: error: boom"):
        _run(tmp_path, producer, ("cat",))


def test_the_deadline_stops_a_hanging_pipeline(tmp_path: Path) -> None:
    producer = _script(tmp_path, "pg_dump", "echo start; exec sleep 60")
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"timed out after 0\.5s"):
        _run(tmp_path, producer, None, timeout=0.5)
    assert time.monotonic() - started < 5


def test_a_missing_compressor_is_a_dump_failure_and_pg_dump_is_reaped(tmp_path: Path) -> None:
    producer = _script(tmp_path, "pg_dump", "exec sleep 60")
    started = time.monotonic()
    with pytest.raises(DumpFailed, match="cannot start no-such-zstd"):
        _run(tmp_path, producer, ("no-such-zstd", "-3"))
    assert time.monotonic() - started < 5
