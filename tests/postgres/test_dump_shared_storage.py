"""Real runs sharing one storage root never touch each other, in any order."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.postgres import PgCluster
from tests.harness.wait import wait_for
from tests.support.dump import (
    DumpWorld,
    locked,
    pgpass_line,
    run_runner,
    start_runner,
    wait_for_child,
)


@pytest.fixture
def second_db(pg_cluster: PgCluster, dump_world: DumpWorld) -> Iterator[str]:
    """Another sample database the same role may dump (its own table locks)."""
    name = f"{dump_world.conn.dbname}_b"[:63]
    pg_cluster.create_database(name)
    dump_world.pgpass.write_text(pgpass_line(dump_world.conn) + pgpass_line(dump_world.conn, name))
    try:
        yield name
    finally:
        pg_cluster.drop_database(name)


def _wait_reserved(storage: Path, count: int, timeout: float = 30) -> None:
    def reserved() -> bool:
        running = [p for p in storage.glob("t-*.manifest.json") if '"running"' in p.read_text()]
        return len(running) >= count

    wait_for(reserved, timeout, f"{count} runs to reserve a name", every=0.02)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]


def _manifests(storage: Path) -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(storage.glob("t-*.manifest.json"))}


@pytest.mark.parametrize(
    ("starts", "ends"),
    [("ab", "ab"), ("ab", "ba"), ("ba", "ab"), ("ba", "ba")],
    ids=[
        "a-first-a-done-first",
        "a-first-b-done-first",
        "b-first-a-done-first",
        "b-first-b-done-first",
    ],
)
def test_two_concurrent_runs_on_one_storage_root_both_succeed_in_any_order(
    dump_world: DumpWorld, pg_cluster: PgCluster, second_db: str, starts: str, ends: str
) -> None:
    dbs = {"a": dump_world.conn.dbname, "b": second_db}
    storage = dump_world.storage
    with contextlib.ExitStack() as stack:
        locks = {k: stack.enter_context(contextlib.ExitStack()) for k in dbs}
        for key, db in dbs.items():
            locks[key].enter_context(locked(pg_cluster, db))
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for n, key in enumerate(starts, start=1):
            procs[key] = start_runner(dump_world.env(PGDATABASE=dbs[key]))
            wait_for_child(procs[key].pid, "pg_dump")
            _wait_reserved(storage, n)
        for key in ends:
            locks[key].close()  # this run's dump may go on now
            _finish(procs[key])
    manifests = _manifests(storage)
    assert [m["status"] for m in manifests.values()] == ["ok", "ok"]
    by_db = {m["database"]: m for m in manifests.values()}
    assert set(by_db) == set(dbs.values())
    for manifest in manifests.values():  # each artifact is its own, whole and verifiable
        artifact = str(manifest["artifact"])
        result = run_runner(dump_world.env(), "verify", artifact)
        assert result.returncode == 0, result.stderr
    newest = max(manifests)  # reservation order: the run that started last
    latest = json.loads((storage / "t.latest.json").read_text())
    assert f"{latest['artifact']}".startswith(newest.removesuffix(".manifest.json"))
    assert latest["database"] == dbs[starts[-1]]
    assert not [p.name for p in storage.iterdir() if p.name.startswith(".tmp-")]


def test_two_runs_starting_in_the_same_second_get_distinct_names_and_both_verify(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    storage = dump_world.storage
    lock_path = storage / ".t.lock"
    for _attempt in range(6):
        for path in storage.iterdir():
            path.unlink()
        # hold the prefix lock so both start, then reserve one after the other
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            while time.time() % 1 > 0.3:  # start early in a second
                time.sleep(0.01)
            procs = [start_runner(dump_world.env()) for _ in range(2)]
            time.sleep(1.5)
        for proc in procs:
            _finish(proc)
        manifests = _manifests(storage)
        stems = sorted(name.removesuffix(".manifest.json") for name in manifests)
        if stems[1] == f"{stems[0]}-1":
            break
    else:
        pytest.fail("never managed to start two runs within one second")
    assert stems[1] == f"{stems[0]}-1"
    artifacts = [str(manifests[f"{s}.manifest.json"]["artifact"]) for s in stems]
    assert artifacts[0] != artifacts[1]
    latest = json.loads((storage / "t.latest.json").read_text())
    assert latest["artifact"] == artifacts[1]  # the newest
    for artifact in artifacts:
        result = run_runner(dump_world.env(), "verify", artifact)
        assert result.returncode == 0, result.stderr
    target = f"{dump_world.conn.dbname}_r"[:63]
    pg_cluster.create_database(target, template="template0")
    try:
        restored = run_runner(
            dump_world.env(
                PGUSER=pg_cluster.admin.user, PGPASSFILE=str(_admin_pgpass(dump_world, pg_cluster))
            ),
            "restore",
            artifacts[1],
            "--target-db",
            target,
        )
        assert restored.returncode == 0, restored.stderr
    finally:
        pg_cluster.drop_database(target)


def _admin_pgpass(world: DumpWorld, pg_cluster: PgCluster) -> Path:
    path = world.base / "admin-pgpass"
    path.write_text(pgpass_line(pg_cluster.admin, "*"))
    path.chmod(0o600)
    return path


def test_a_planted_symlink_in_the_storage_root_never_makes_the_runner_write_outside(
    dump_world: DumpWorld, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = dump_world.storage
    now = time.time()
    planted = []
    for offset in range(-2, 30):  # every name the next runs could pick
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + offset))
        for suffix in (".manifest.json", ".latest.json", ".dump.zst"):
            name = f".tmp-t-{stamp}{suffix}"
            (storage / name).symlink_to(outside / name)
            planted.append(name)
    (storage / ".tmp-t.latest.json").symlink_to(outside / "latest")
    (storage / "t.latest.json").symlink_to(outside / "pointer")
    result = run_runner(dump_world.env())
    assert result.returncode == 0, result.stderr
    assert list(outside.iterdir()) == []
    latest = storage / "t.latest.json"
    assert not latest.is_symlink()
    assert json.loads(latest.read_text())["status"] == "ok"


def test_clean_up_of_a_failed_run_leaves_a_live_runs_temporary_artifact_alone(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    """The old failure: a second run's clean-up deleted the first run's temp file."""
    with locked(pg_cluster, dump_world.conn.dbname):
        first = start_runner(dump_world.env())
        wait_for_child(first.pid, "pg_dump")
        _wait_reserved(dump_world.storage, 1)
        failed = run_runner(dump_world.env(PGDATABASE="no_such_database"))
        assert failed.returncode == 3
        temps = [p.name for p in dump_world.storage.iterdir() if p.name.startswith(".tmp-")]
        assert any(name.endswith(".dump.zst") for name in temps), temps
    _finish(first)
    assert not [p for p in dump_world.storage.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.usefixtures("as_root")
def test_a_sigkilled_run_leaves_its_password_copy_only_in_memory_and_the_next_run_removes_it(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    from learnops_dump.credentials import filesystem_of

    tmp = dump_world.tmp
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(tmp)], check=True
    )
    try:
        with locked(pg_cluster, dump_world.conn.dbname):
            proc = start_runner(dump_world.env(), start_new_session=True)
            wait_for_child(proc.pid, "pg_dump")
            copies = [p for p in tmp.iterdir() if p.name.startswith("learnops-pgpass-")]
            assert len(copies) == 1
            assert filesystem_of(copies[0]) == "tmpfs"
            os.killpg(proc.pid, 9)  # what an OOM kill or a node failure does
            proc.communicate(timeout=30)
        # the copy is where it was, in memory only; nothing of it reached storage or disk
        assert [p.name for p in tmp.iterdir() if p.name.startswith("learnops-pgpass-")] == [
            copies[0].name
        ]
        outside = [
            p for p in dump_world.base.rglob("*") if p.is_file() and not p.is_relative_to(tmp)
        ]
        leaked = [
            str(p) for p in outside
            if p != dump_world.pgpass
            and any(s.encode() in p.read_bytes() for s in dump_world.secrets())
        ]  # fmt: skip
        assert leaked == []
        after = run_runner(dump_world.env())
        assert after.returncode == 0, after.stderr
        assert list(tmp.iterdir()) == []
        killed = [m for m in _manifests(dump_world.storage).values() if m["status"] == "failed"]
        assert len(killed) == 1
        assert "ended before it finished" in str(killed[0]["message"])
        assert "credentials.dead_copies" in after.stderr
    finally:
        subprocess.run(["umount", str(tmp)], check=True)
