"""Verification that means it: every data block, the manifest's word, the backup's source."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.postgres import PgCluster
from tests.harness.wait import wait_for
from tests.support.dump import (
    DumpWorld,
    children_of,
    fake_clients,
    pgpass_line,
    run_runner,
    start_runner,
)


def _backup(world: DumpWorld, **env: str) -> dict[str, object]:
    result = run_runner(world.env(**env))
    assert result.returncode == 0, result.stderr
    prefix = env.get("BACKUP_PREFIX", "t")
    return dict(json.loads((world.storage / f"{prefix}.latest.json").read_text()))


def test_a_dump_cut_after_its_table_of_contents_never_becomes_a_backup(
    dump_world: DumpWorld,
) -> None:
    """pg_dump "succeeds" but the stream loses its last data blocks: --list alone passes."""
    clients = fake_clients(dump_world.base, pg_dump='"$REAL/pg_dump" "$@" | head -c -300')
    result = run_runner(dump_world.env(BACKUP_PG_CLIENT_DIRS=clients, BACKUP_COMPRESSION="gzip:1"))
    assert result.returncode == 7, result.stderr
    term = json.loads(dump_world.termlog.read_text())
    assert term["reason"] == "VerificationError"
    assert "reading every data block failed" in term["message"]
    assert not [p for p in dump_world.storage.iterdir() if p.name.endswith(".dump")]


@pytest.mark.parametrize("compression", ["gzip:1", "zstd:3"])
def test_verify_reads_past_the_table_of_contents(dump_world: DumpWorld, compression: str) -> None:
    manifest = _backup(dump_world, BACKUP_COMPRESSION=compression)
    artifact = dump_world.storage / str(manifest["artifact"])
    good = artifact.read_bytes()
    # a copy without a manifest, cut well after the TOC (which --list alone accepts)
    cut = artifact.with_name(artifact.name.replace("t-", "cut-", 1))
    cut.write_bytes(good[: len(good) - 200])
    refused = run_runner(dump_world.env(), "verify", cut.name)
    assert refused.returncode == 7, refused.stderr
    assert "no readable manifest" in refused.stderr
    forced = run_runner(dump_world.env(), "verify", cut.name, "--force")
    assert forced.returncode == 7, forced.stderr
    # the same damage under the real name: its manifest's size and sha256 no longer match
    artifact.write_bytes(good[: len(good) - 200])
    assert run_runner(dump_world.env(), "verify", artifact.name).returncode == 7
    artifact.write_bytes(good)
    ok = run_runner(dump_world.env(), "verify", artifact.name)
    assert ok.returncode == 0, ok.stderr


@pytest.fixture
def other_db(pg_cluster: PgCluster, dump_world: DumpWorld) -> str:
    name = f"{dump_world.conn.dbname}_o"[:63]
    pg_cluster.create_database(name)
    dump_world.pgpass.write_text(pgpass_line(dump_world.conn) + pgpass_line(dump_world.conn, name))
    return name


def _admin_env(world: DumpWorld, pg_cluster: PgCluster, **extra: str) -> dict[str, str]:
    path = world.base / "admin-pgpass"
    path.write_text(pgpass_line(pg_cluster.admin, "*"))
    path.chmod(0o600)
    return world.env(PGUSER=pg_cluster.admin.user, PGPASSFILE=str(path), **extra)


def test_an_artifact_swapped_for_another_databases_dump_is_refused(
    dump_world: DumpWorld, pg_cluster: PgCluster, other_db: str
) -> None:
    ours = _backup(dump_world)
    theirs = _backup(dump_world, PGDATABASE=other_db, BACKUP_PREFIX="o")
    ours_path = dump_world.storage / str(ours["artifact"])
    shutil.copyfile(dump_world.storage / str(theirs["artifact"]), ours_path)
    target = f"{dump_world.conn.dbname}_x"[:63]
    pg_cluster.create_database(target, template="template0")
    try:
        env = _admin_env(dump_world, pg_cluster, PGDATABASE=dump_world.conn.dbname)
        restore = ["restore", ours_path.name, "--target-db", target]
        # with its manifest: size and sha256 give it away
        assert run_runner(env, "verify", ours_path.name).returncode == 7
        assert run_runner(env, *restore).returncode == 7
        # with the manifest deleted, nothing vouches for it
        (dump_world.storage / ours_path.name.replace(".dump.zst", ".manifest.json")).unlink()
        refused = run_runner(env, "verify", ours_path.name)
        assert refused.returncode == 7
        assert "--force" in refused.stderr
        assert run_runner(env, *restore).returncode == 7
        # forced, it is still a dump of the other database, which this restore does not back up
        forced = run_runner(env, *restore, "--force")
        assert forced.returncode == 7, forced.stderr
        assert "another database" in forced.stderr
        with pg_cluster.connect(pg_cluster.admin.with_db(target)) as c:
            tables = c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert tables.fetchone() == (0,)  # nothing was restored
        allowed = run_runner(env, *restore, "--force", "--allow-other-source")
        assert allowed.returncode == 0, allowed.stderr
    finally:
        pg_cluster.drop_database(target)


def test_the_manifest_records_where_the_backup_came_from_and_restore_checks_it(
    dump_world: DumpWorld, pg_cluster: PgCluster, other_db: str
) -> None:
    theirs = _backup(dump_world, PGDATABASE=other_db)
    assert theirs["database"] == other_db
    assert theirs["host"] == dump_world.conn.host
    assert theirs["port"] == str(dump_world.conn.port)
    assert "systemIdentifier" in theirs
    target = f"{dump_world.conn.dbname}_y"[:63]
    pg_cluster.create_database(target, template="template0")
    try:
        env = _admin_env(dump_world, pg_cluster, PGDATABASE=dump_world.conn.dbname)
        restore = ["restore", str(theirs["artifact"]), "--target-db", target]
        refused = run_runner(env, *restore)
        assert refused.returncode == 7
        assert "--allow-other-source" in refused.stderr
        assert run_runner(env, *restore, "--allow-other-source").returncode == 0
    finally:
        pg_cluster.drop_database(target)


@pytest.mark.parametrize("command", ["verify", "run"])
def test_sigterm_during_verification_is_a_stop_not_a_failed_verification(
    dump_world: DumpWorld, command: str
) -> None:
    manifest = _backup(dump_world)  # zstd: pg_restore reads a decompressed stream
    clients = fake_clients(dump_world.base, pg_restore="exec sleep 60")
    env = dump_world.env(BACKUP_PG_CLIENT_DIRS=clients)
    args = ["verify", str(manifest["artifact"])] if command == "verify" else ["run"]
    proc = start_runner(env, *args)
    wait_for(lambda: "sleep" in children_of(proc.pid), 60, "verification to start", every=0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 5, err.decode()[-2000:]
    assert b"SIGTERM" in err
    if command == "run":
        term = json.loads(dump_world.termlog.read_text())
        assert term["reason"] == "Timeout"
        assert not [p for p in dump_world.storage.iterdir() if p.name.startswith(".tmp-")]


def test_verify_without_a_manifest_passes_only_when_forced_and_whole(
    dump_world: DumpWorld, tmp_path: Path
) -> None:
    manifest = _backup(dump_world, BACKUP_FORMAT="directory", BACKUP_COMPRESSION="gzip:1")
    artifact = dump_world.storage / str(manifest["artifact"])
    copy = tmp_path / artifact.name
    subprocess.run(["cp", "-a", str(artifact), str(copy)], check=True)
    assert run_runner(dump_world.env(), "verify", str(copy)).returncode == 7
    assert run_runner(dump_world.env(), "verify", str(copy), "--force").returncode == 0
    data = max(copy.glob("*.dat.gz"), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[:-40])
    assert run_runner(dump_world.env(), "verify", str(copy), "--force").returncode == 7
