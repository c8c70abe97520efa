"""Every failure path: right exit code, failed manifest, no final artifact, old backup intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from psycopg import sql

from tests.harness.net import free_port
from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import (
    DumpWorld,
    ProcSampler,
    canary_password,
    children_of,
    files_containing,
    locked,
    pgpass_line,
    run_runner,
    secret_forms,
    start_runner,
    wait_for_child,
)

REAL_BIN = Path("/usr/lib/postgresql/15/bin")


class Before:
    """The storage after one good backup, to prove a failed run leaves it alone."""

    def __init__(self, world: DumpWorld) -> None:
        result = run_runner(world.env())
        assert result.returncode == 0, result.stderr
        self.world = world
        self.latest = (world.storage / "t.latest.json").read_bytes()
        self.files = {p.name: p.read_bytes() for p in world.storage.iterdir() if p.is_file()}

    def assert_failed_run(
        self, result: subprocess.CompletedProcess[str], code: int, reason: str
    ) -> dict[str, object]:
        """Exit code, termination message, one failed manifest, everything else untouched."""
        storage = self.world.storage
        assert result.returncode == code, result.stderr
        term = json.loads(self.world.termlog.read_text())
        assert (term["status"], term["exitCode"], term["reason"]) == ("failed", code, reason)
        assert term["artifact"] is None
        assert term["message"]
        new = sorted(set(os.listdir(storage)) - set(self.files))
        assert len(new) == 1, new  # only the failed manifest: no artifact, no temp leftovers
        assert new[0].endswith(".manifest.json")
        manifest: dict[str, object] = json.loads((storage / new[0]).read_text())
        assert manifest["status"] == "failed"
        assert manifest["reason"] == reason
        for name, data in self.files.items():
            assert (storage / name).read_bytes() == data
        assert (storage / "t.latest.json").read_bytes() == self.latest
        assert not any(s in result.stdout + result.stderr for s in self.world.secrets())
        assert files_containing(storage, self.world.secrets()) == []
        assert not any(s in json.dumps(term) for s in self.world.secrets())
        assert list(self.world.tmp.iterdir()) == []
        return manifest


@pytest.fixture
def before(dump_world: DumpWorld) -> Before:
    return Before(dump_world)


def test_pg_dump_failing_exits_4(before: Before, pg_cluster: PgCluster) -> None:
    with pg_cluster.connect() as c:
        c.execute(
            sql.SQL("REVOKE pg_read_all_data FROM {}").format(
                sql.Identifier(before.world.conn.user)
            )
        )
    manifest = before.assert_failed_run(run_runner(before.world.env()), 4, "DumpError")
    assert "permission denied" in str(manifest["message"])
    stages = manifest["stages"]
    assert isinstance(stages, list)
    assert stages[0]["name"] == "pg_dump"
    assert stages[0]["exitCode"] != 0


def test_a_configuration_error_exits_2_with_a_failed_manifest(before: Before) -> None:
    result = run_runner({**before.world.env(), "BACKUP_FORMAT": "tar"})
    manifest = before.assert_failed_run(result, 2, "ConfigError")
    assert "BACKUP_FORMAT" in str(manifest["message"])


def test_a_missing_storage_root_exits_6_and_says_so(dump_world: DumpWorld) -> None:
    missing = dump_world.base / "no-such-dir"
    result = run_runner(dump_world.env(BACKUP_STORAGE_ROOT=str(missing)))
    assert result.returncode == 6
    term = json.loads(dump_world.termlog.read_text())
    assert term["reason"] == "StorageError"
    assert "does not exist" in term["message"]
    assert "does not exist" in result.stderr
    assert not missing.exists()


@pytest.mark.usefixtures("as_root")
def test_an_unwritable_storage_exits_6_and_keeps_the_old_backup(before: Before) -> None:
    storage = before.world.storage
    subprocess.run(["mount", "--bind", str(storage), str(storage)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(storage)], check=True)
        result = run_runner(before.world.env())
    finally:
        subprocess.run(["umount", str(storage)], check=True)
    assert result.returncode == 6
    term = json.loads(before.world.termlog.read_text())
    assert term["reason"] == "StorageError"
    assert sorted(os.listdir(storage)) == sorted(before.files)  # nothing could be written


def test_a_wrong_password_exits_3_without_leaking_it(before: Before) -> None:
    wrong = canary_password()
    conn = before.world.conn
    before.world.pgpass.write_text(
        pgpass_line(Conn(conn.host, conn.port, conn.user, wrong, conn.dbname))
    )
    with ProcSampler([*secret_forms(wrong), *before.world.secrets()]) as sampler:
        result = run_runner(before.world.env())
    manifest = before.assert_failed_run(result, 3, "ConnectionError")
    assert "password authentication failed" in str(manifest["message"])
    assert sampler.hits == []
    assert not any(s in result.stderr for s in secret_forms(wrong))


def test_an_unreachable_host_exits_3(before: Before) -> None:
    result = run_runner(before.world.env(PGPORT=str(free_port())))
    before.assert_failed_run(result, 3, "ConnectionError")


def test_a_missing_database_exits_3(before: Before) -> None:
    result = run_runner(before.world.env(PGDATABASE="no_such_database"))
    manifest = before.assert_failed_run(result, 3, "ConnectionError")
    assert "does not exist" in str(manifest["message"])


def test_the_timeout_stops_a_blocked_dump_and_exits_5(
    before: Before, pg_cluster: PgCluster
) -> None:
    with (
        locked(pg_cluster, before.world.conn.dbname),
        ProcSampler(before.world.secrets()) as sampler,
    ):
        started = time.monotonic()
        result = run_runner(before.world.env(BACKUP_TIMEOUT_SECONDS="2"))
        elapsed = time.monotonic() - started
    manifest = before.assert_failed_run(result, 5, "Timeout")
    assert "timed out after 2s" in str(manifest["message"])
    assert "pg_dump" in sampler.seen
    assert elapsed < 2 + 2 + 5  # timeout + kill grace + slack
    assert sampler.hits == []


def test_sigterm_mid_dump_writes_a_failed_manifest_and_exits_5(
    before: Before, pg_cluster: PgCluster
) -> None:
    with locked(pg_cluster, before.world.conn.dbname):
        proc = start_runner(before.world.env())
        wait_for_child(proc.pid, "pg_dump")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())
    manifest = before.assert_failed_run(result, 5, "Timeout")
    assert "SIGTERM" in str(manifest["message"])
    assert elapsed < 10  # well inside a pod's 30 s grace period
    assert not children_of(proc.pid)


@pytest.mark.usefixtures("as_root")
def test_a_full_disk_exits_6_and_leaves_no_partial_artifact(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    storage = dump_world.storage
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(storage)], check=True)
    try:
        env = dump_world.env(BACKUP_COMPRESSION="none")
        before = Before(dump_world)
        pg_cluster.fill_mb(dump_world.conn.dbname, 15)
        with pg_cluster.connect() as c:
            c.execute(
                sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(dump_world.conn.user))
            )
        manifest = before.assert_failed_run(run_runner(env), 6, "StorageError")
        assert "No space left" in str(manifest["message"])
    finally:
        subprocess.run(["umount", str(storage)], check=True)


def test_a_server_newer_than_every_client_exits_8_naming_both(
    before: Before, tmp_path: Path
) -> None:
    # Only client 15 exists here, so the older client is faked: a 14/bin whose psql is the real one
    # (the probe must work) and whose pg_dump would never be run.
    bindir = tmp_path / "clients" / "14" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "psql").symlink_to(REAL_BIN / "psql")
    (bindir / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.0'\n")
    (bindir / "pg_dump").chmod(0o755)
    env = before.world.env(BACKUP_PG_CLIENT_DIRS=str(tmp_path / "clients" / "*" / "bin"))
    manifest = before.assert_failed_run(run_runner(env), 8, "VersionMismatch")
    assert "server major 15" in str(manifest["message"])
    assert "newest 14" in str(manifest["message"])


def test_an_artifact_failing_verification_exits_7_and_never_gets_a_final_name(
    before: Before, tmp_path: Path
) -> None:
    # A real pg_dump and psql; a pg_restore that rejects the archive, as it would a corrupt one.
    bindir = tmp_path / "clients" / "15" / "bin"
    bindir.mkdir(parents=True)
    for tool in ("psql", "pg_dump"):
        (bindir / tool).symlink_to(REAL_BIN / tool)
    (bindir / "pg_restore").write_text(
        "#!/bin/sh\necho 'pg_restore: error: could not read input file: end of file' >&2\nexit 1\n"
    )
    (bindir / "pg_restore").chmod(0o755)
    env = before.world.env(BACKUP_PG_CLIENT_DIRS=str(tmp_path / "clients" / "*" / "bin"))
    manifest = before.assert_failed_run(run_runner(env), 7, "VerificationError")
    assert "pg_restore --list exited with 1" in str(manifest["message"])


def test_verify_rejects_a_truncated_artifact(before: Before) -> None:
    world = before.world
    latest = json.loads(before.latest)
    artifact = world.storage / latest["artifact"]
    copy = world.storage / artifact.name.replace("t-", "copy-", 1)
    copy.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    result = run_runner(world.env(), "verify", copy.name)
    assert result.returncode == 7, result.stderr
    ok = run_runner(world.env(), "verify", artifact.name)
    assert ok.returncode == 0, ok.stderr


def test_leftovers_of_a_crashed_run_are_removed(before: Before) -> None:
    leftover = before.world.storage / ".tmp-t-20200101T000000Z.dump.zst"
    leftover.write_bytes(b"partial")
    assert run_runner(before.world.env()).returncode == 0
    assert not leftover.exists()


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("spare_inodes", [1, 2, 3, 4])
def test_an_exhausted_inode_table_never_leaves_an_artifact_without_its_manifest(
    dump_world: DumpWorld, spare_inodes: int
) -> None:
    storage = dump_world.storage
    probe = storage.parent / "probe"
    probe.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(probe)], check=True)
    # how many inodes one good backup leaves behind (root included); a run needs one more
    # while it writes, a second run up to four more: each step of it meets a full table
    try:
        assert run_runner(dump_world.env(BACKUP_STORAGE_ROOT=str(probe))).returncode == 0
        used = os.statvfs(probe).f_files - os.statvfs(probe).f_ffree
    finally:
        subprocess.run(["umount", str(probe)], check=True)
    options = f"size=16m,nr_inodes={used + spare_inodes}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(storage)], check=True)
    try:
        first = run_runner(dump_world.env())
        assert first.returncode == 0, first.stderr
        before = {p.name: p.read_bytes() for p in storage.iterdir()}
        result = run_runner(dump_world.env())
        assert result.returncode == (0 if spare_inodes == 4 else 6), result.stderr
        term = json.loads(dump_world.termlog.read_text())
        assert term["reason"] == ("Ok" if result.returncode == 0 else "StorageError")
        names = set(os.listdir(storage))
        assert not [n for n in names if n.startswith(".tmp-")]
        for name in names:  # every artifact has its manifest, and it says so
            if name.endswith((".dump.zst", ".dump")):
                stem = name.split(".dump")[0]
                manifest = json.loads((storage / f"{stem}.manifest.json").read_text())
                assert manifest["status"] == "ok"
                assert manifest["artifact"] == name
        for name, data in before.items():
            if name.endswith(".dump.zst"):
                assert (storage / name).read_bytes() == data  # the old backup is intact
    finally:
        subprocess.run(["umount", str(storage)], check=True)
