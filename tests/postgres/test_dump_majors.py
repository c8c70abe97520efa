"""Every supported server major (13-18), backed up and restored for real with the image's clients.

The servers are registry builds (tests/harness/install-postgresql.sh); the runner gets exactly the
client set the dump image bundles in CI (14-18), laid out like /usr/lib/postgresql/<major>/bin.
The image itself runs one backup and restore per major in tests/container/test_dump_image.py.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.dumpimage import CI_MAJORS
from tests.harness.postgres import SUPPORTED_MAJORS, PgCluster
from tests.support.dump import (
    DumpWorld,
    client_dirs,
    create_dump_role,
    run_runner,
    table_checksums,
)

FORMATS = ("custom", "plain", "directory")
COMPRESSIONS = ("none", "gzip:1", "zstd:3", "lz4:1")
NATIVE_LZ4_ZSTD = 16


def expected_client(server_major: int) -> int:
    """The runner's choice: the server's own major, else the closest newer bundled client."""
    return min(m for m in CI_MAJORS if m >= server_major)


def _fresh_db(cluster: PgCluster, label: str) -> str:
    name = f"m_{label}_{secrets.token_hex(3)}"
    cluster.create_database(name)
    return name


def _restore(world: DumpWorld, cluster: PgCluster, artifact: str, clients: str) -> str:
    target = f"m_restored_{secrets.token_hex(3)}"
    with cluster.connect() as c:  # restore as the owner of everything: the superuser
        c.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
    admin = DumpWorld(world.base / f"admin-{target}", cluster.admin.with_db(target))
    env = admin.env(BACKUP_STORAGE_ROOT=str(world.storage), BACKUP_PG_CLIENT_DIRS=clients)
    done = run_runner(env, "restore", artifact, "--target-db", target, "--allow-other-source")
    assert done.returncode == 0, done.stderr[-2000:]
    return target


@pytest.mark.parametrize("major", SUPPORTED_MAJORS)
def test_every_format_and_compression_backs_up_verifies_and_restores_on_each_major(
    major: int, pg_majors: Callable[[int], PgCluster], tmp_path: Path
) -> None:
    cluster = pg_majors(major)
    clients = client_dirs(tmp_path, CI_MAJORS)
    source = _fresh_db(cluster, "src")
    expected = table_checksums(cluster, source)
    assert expected
    assert all(count > 0 for count, _ in expected.values())
    client = expected_client(major)
    for fmt in FORMATS:
        for comp in COMPRESSIONS:
            algo = comp.partition(":")[0]
            case = f"{major}-{fmt}-{algo}"
            world = DumpWorld(tmp_path / case, create_dump_role(cluster, source))
            # the scratch-restore verification once per major, the TOC check everywhere else
            verify = "restore" if (fmt, algo) == ("custom", "zstd") else "list"
            done = run_runner(
                world.env(
                    BACKUP_FORMAT=fmt,
                    BACKUP_COMPRESSION=comp,
                    BACKUP_PG_CLIENT_DIRS=clients,
                    BACKUP_PREFIX="m",
                    BACKUP_VERIFY=verify,
                )
            )
            term = json.loads(world.termlog.read_text())
            native = client >= NATIVE_LZ4_ZSTD
            if fmt == "directory" and algo in {"zstd", "lz4"} and not native:
                # documented: pg_dump < 16 cannot compress a directory with zstd/lz4 itself
                assert (done.returncode, term["reason"]) == (2, "ConfigError"), case
                continue
            assert done.returncode == 0, f"{case}: {done.stderr[-2000:]}"
            assert term["clientVersion"].split(".")[0] == str(client), case
            assert term["serverVersion"].startswith(f"{major}."), case
            manifest = json.loads((world.storage / "m.latest.json").read_text())
            stages = [s["name"] for s in manifest["stages"]]
            if algo in {"zstd", "lz4"}:
                # pg_dump's own zstd/lz4 from 16 on, else an external compressor stage
                assert stages == (["pg_dump"] if native else ["pg_dump", algo]), case
            assert manifest["verification"]["mode"] == verify, case
            if algo == "zstd":  # the verify subcommand once per format (each run verifies too)
                verified = run_runner(
                    world.env(BACKUP_PG_CLIENT_DIRS=clients), "verify", term["artifact"]
                )
                assert verified.returncode == 0, f"{case}: {verified.stderr[-2000:]}"
            target = _restore(world, cluster, term["artifact"], clients)
            try:
                assert table_checksums(cluster, target) == expected, case
            finally:
                cluster.drop_database(target)


def test_a_server_newer_than_every_bundled_client_fails_with_exit_8_naming_both(
    pg_majors: Callable[[int], PgCluster], tmp_path: Path
) -> None:
    """For real: an 18 server and the bundle without 18 (what an image from before 18 has)."""
    cluster = pg_majors(max(SUPPORTED_MAJORS))
    source = _fresh_db(cluster, "new")
    world = DumpWorld(tmp_path, create_dump_role(cluster, source))
    older = client_dirs(tmp_path, [m for m in CI_MAJORS if m < max(SUPPORTED_MAJORS)])
    done = run_runner(world.env(BACKUP_PG_CLIENT_DIRS=older))
    term = json.loads(world.termlog.read_text())
    assert done.returncode == 8
    assert (term["status"], term["reason"]) == ("failed", "VersionMismatch")
    assert re.search(
        r"server major 18 is newer than every installed pg_dump \(newest 17", term["message"]
    )
    assert term["serverVersion"].startswith("18.")
    published = [p.name for p in world.storage.iterdir() if not p.name.startswith(".")]
    assert published == [p.name for p in world.storage.glob("*.manifest.json")]


def test_a_large_database_on_the_newest_major_round_trips_with_equal_checksums(
    pg_majors: Callable[[int], PgCluster], tmp_path: Path
) -> None:
    """One large run (about 150 MB of pgbench rows): the newest server, the newest client."""
    cluster = pg_majors(max(SUPPORTED_MAJORS))
    source = _fresh_db(cluster, "large")
    cluster.pgbench_init(source, 10)
    try:
        assert cluster.database_size(source) > 100 * 2**20
        clients = client_dirs(tmp_path, CI_MAJORS)
        world = DumpWorld(tmp_path / "run", create_dump_role(cluster, source))
        done = run_runner(
            world.env(BACKUP_COMPRESSION="zstd:1", BACKUP_PG_CLIENT_DIRS=clients,
                      BACKUP_TIMEOUT_SECONDS="300"),
            timeout=320,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        term = json.loads(world.termlog.read_text())
        target = _restore(world, cluster, term["artifact"], clients)
        try:
            assert table_checksums(cluster, target) == table_checksums(cluster, source)
        finally:
            cluster.drop_database(target)
    finally:
        cluster.drop_database(source)
