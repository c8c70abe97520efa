"""Roles and globals (BACKUP_GLOBALS): their own artifact, manifest and checksum; passwords out
unless asked for and never in a log or status; `restore --with-globals` applies them first."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from tests.harness.postgres import PgCluster, major_bindir
from tests.support.dump import (
    DumpWorld,
    canary_password,
    create_dump_role,
    files_containing,
    run_runner,
    table_checksums,
)

SCRAM = "SCRAM-SHA-256$"


@pytest.fixture
def app_role(pg_cluster: PgCluster, dump_world: DumpWorld) -> Iterator[tuple[str, str]]:
    """A login role with a canary password that owns a table in the backed-up database."""
    name, password = f"app_{secrets.token_hex(4)}", canary_password()
    pg_cluster.create_user(name, password)
    ident = sql.Identifier(name)
    with pg_cluster.connect(pg_cluster.admin.with_db(dump_world.conn.dbname)) as c:
        c.execute(sql.SQL("CREATE TABLE owned_by_app (id int PRIMARY KEY)"))
        c.execute(sql.SQL("INSERT INTO owned_by_app SELECT generate_series(1, 50)"))
        c.execute(sql.SQL("ALTER TABLE owned_by_app OWNER TO {}").format(ident))
        c.execute(sql.SQL("GRANT SELECT ON owned_by_app TO {}").format(
            sql.Identifier(dump_world.conn.user)))  # fmt: skip
    try:
        yield name, password
    finally:
        with pg_cluster.connect(pg_cluster.admin.with_db(dump_world.conn.dbname)) as c:
            c.execute(sql.SQL("DROP TABLE IF EXISTS owned_by_app"))
        with pg_cluster.connect() as c:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def _all_output(world: DumpWorld, stdout: str, stderr: str) -> str:
    texts = [stdout, stderr, world.termlog.read_text()]
    texts += [p.read_text() for p in world.storage.glob("*.json")]
    return "\n".join(texts)


def test_globals_are_their_own_checksummed_artifact_without_role_passwords_by_default(
    dump_world: DumpWorld, app_role: tuple[str, str]
) -> None:
    role, password = app_role
    done = run_runner(dump_world.env(BACKUP_GLOBALS="true"))
    assert done.returncode == 0, done.stderr[-2000:]
    term = json.loads(dump_world.termlog.read_text())
    stem = str(term["artifact"]).removesuffix(".dump.zst").removesuffix(".dump")
    manifest = json.loads((dump_world.storage / f"{stem}.manifest.json").read_text())
    entry = manifest["globals"]
    assert entry["artifact"] == f"{stem}.globals.sql"
    assert entry["manifest"] == f"{stem}.globals.manifest.json"
    assert entry["rolePasswords"] is False
    script = (dump_world.storage / entry["artifact"]).read_bytes()
    assert hashlib.sha256(script).hexdigest() == entry["sha256"] == term["globals"]["sha256"]
    assert entry["sizeBytes"] == len(script)
    own = json.loads((dump_world.storage / entry["manifest"]).read_text())
    assert (own["artifact"], own["sha256"]) == (entry["artifact"], entry["sha256"])
    assert own["runManifest"] == f"{stem}.manifest.json"
    text = script.decode()
    assert f"CREATE ROLE {role};" in text
    assert SCRAM not in text  # --no-role-passwords, and a non-superuser could dump it
    assert "-- PostgreSQL database cluster dump complete" in text
    assert password not in _all_output(dump_world, done.stdout, done.stderr)
    # the verify subcommand checks it against the run's manifest
    verified = run_runner(dump_world.env(), "verify", entry["artifact"])
    assert verified.returncode == 0, verified.stderr[-2000:]
    (dump_world.storage / entry["artifact"]).write_bytes(script + b"-- tampered\n")
    tampered = run_runner(dump_world.env(), "restore", term["artifact"], "--target-db",
                          dump_world.conn.dbname, "--with-globals")  # fmt: skip
    assert tampered.returncode == 7
    assert "differs from its manifest" in tampered.stderr


def test_role_passwords_need_an_explicit_opt_in_and_a_role_that_may_read_them(
    pg_cluster: PgCluster, dump_world: DumpWorld, app_role: tuple[str, str], tmp_path: Path
) -> None:
    # pg_read_all_data covers pg_authid; a role with only table grants may not read it
    plain = DumpWorld(tmp_path / "plain", create_dump_role(
        pg_cluster, dump_world.conn.dbname, read_all_data=False))  # fmt: skip
    denied = run_runner(plain.env(BACKUP_GLOBALS="true", BACKUP_GLOBALS_ROLE_PASSWORDS="true"))
    term = json.loads(plain.termlog.read_text())
    assert denied.returncode == 4
    assert (term["status"], term["reason"]) == ("failed", "DumpError")
    assert "includeRolePasswords needs a backup role that may read pg_authid" in term["message"]
    assert not list(plain.storage.glob("*.globals.sql"))
    assert not list(plain.storage.glob("*.dump*"))  # one database: fails before its dump
    # without passwords the same role may dump the globals
    allowed = run_runner(plain.env(BACKUP_GLOBALS="true"))
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    # a superuser may: the hashes are in the artifact, and only there
    world = dump_world  # pg_read_all_data: may read pg_authid
    done = run_runner(world.env(BACKUP_GLOBALS="true", BACKUP_GLOBALS_ROLE_PASSWORDS="true"))
    assert done.returncode == 0, done.stderr[-2000:]
    (script,) = world.storage.glob("*.globals.sql")
    assert SCRAM in script.read_text()
    assert json.loads(world.termlog.read_text())["globals"]["rolePasswords"] is True
    everything_else = _all_output(world, done.stdout, done.stderr)
    assert SCRAM not in everything_else
    assert app_role[1] not in everything_else
    assert files_containing(world.storage, [SCRAM]) == [str(script)]


def test_restore_with_globals_creates_the_roles_first_on_a_fresh_server(
    pg_cluster: PgCluster, dump_world: DumpWorld, app_role: tuple[str, str], tmp_path: Path
) -> None:
    """A new server of the same major: the table's owner exists only through the globals."""
    role, _ = app_role
    done = run_runner(dump_world.env(BACKUP_GLOBALS="true"))
    assert done.returncode == 0, done.stderr[-2000:]
    artifact = json.loads(dump_world.termlog.read_text())["artifact"]
    bindir = major_bindir(pg_cluster.major)
    if bindir is None:
        pytest.skip(f"no second PostgreSQL {pg_cluster.major} build (make deps)")
    fresh = PgCluster(bindir).start()
    try:
        with fresh.connect() as c:
            c.execute("CREATE DATABASE restored TEMPLATE template0")
        admin = DumpWorld(tmp_path / "admin", fresh.admin.with_db("restored"))
        env = admin.env(BACKUP_STORAGE_ROOT=str(dump_world.storage))
        without = run_runner(
            env, "restore", artifact, "--target-db", "restored", "--allow-other-source"
        )
        assert without.returncode == 7  # ALTER TABLE ... OWNER TO a role that does not exist
        with fresh.connect() as c:
            c.execute("DROP DATABASE restored")
            c.execute("CREATE DATABASE restored TEMPLATE template0")
        restored = run_runner(
            env,
            "restore",
            artifact,
            "--target-db",
            "restored",
            "--with-globals",
            "--allow-other-source",
        )
        assert restored.returncode == 0, restored.stderr[-2000:]
        assert '"event":"restore.globals"' in restored.stderr
        with fresh.connect(fresh.admin.with_db("restored")) as c:
            row = c.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_app'"
            ).fetchone()
        assert row == (role,)
        assert table_checksums(fresh, "restored") == table_checksums(
            pg_cluster, dump_world.conn.dbname
        )
    finally:
        fresh.stop()
