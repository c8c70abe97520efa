"""Backups on real object-storage servers (SeaweedFS S3, fake-gcs-server, Azurite).

Each server, with and without age: backup, list, retention, verify, restore round trip
(row counts and per-table checksums), and the canary credential nowhere to be seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import sql

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, ProcSampler, pgpass_line, run_runner
from tests.support.objects import AgeKey, object_env, table_fingerprints


def _json(server: ObjectServer, bucket: str, key: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(server.read(bucket, key))
    return data


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_backup_list_retention_verify_and_restore_round_trip_on_each_server(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    object_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    age_key: AgeKey,
    encrypted: bool,
) -> None:
    bucket = bucket_of(object_server)
    extra = {"BACKUP_RETENTION": "last=1,daily=0,weekly=0,monthly=0"}
    if encrypted:
        extra["BACKUP_AGE_RECIPIENTS"] = age_key.recipient
    env = object_env(dump_world, object_server, bucket, **extra)
    needles = [*dump_world.secrets(), object_server.secret, age_key.secret_line]

    with ProcSampler(needles) as sampler:
        first = run_runner(env)
    assert first.returncode == 0, first.stderr
    term = json.loads(dump_world.termlog.read_text())
    artifact = str(term["artifact"])
    assert artifact.endswith(".dump.zst.age" if encrypted else ".dump.zst")
    assert term["location"] == {"kind": object_server.kind, "bucket": bucket, "key": artifact}
    keys = object_server.keys(bucket)
    assert set(keys) == {artifact, artifact.replace(".dump.zst", "").removesuffix(".age")
                         + ".manifest.json", "t.latest.json"}  # fmt: skip
    latest = _json(object_server, bucket, "t.latest.json")
    assert latest["artifact"] == artifact
    assert latest["status"] == "ok"
    verification = latest["verification"]
    assert isinstance(verification, dict)
    assert verification["mode"] == ("checksum" if encrypted else "list")
    if encrypted:
        encryption = latest["encryption"]
        assert isinstance(encryption, dict)
        assert encryption["recipients"] == [encryption["recipients"][0]]
        assert str(encryption["recipients"][0]).startswith("sha256:")
        assert age_key.recipient not in json.dumps(latest)

    # a second run: retention (last=1) prunes the first, only after the new one succeeded
    second = run_runner(env)
    assert second.returncode == 0, second.stderr
    newest = str(_json(object_server, bucket, "t.latest.json")["artifact"])
    assert newest != artifact
    keys = object_server.keys(bucket)
    assert artifact not in keys
    assert newest in keys
    assert len([k for k in keys if k.endswith(".manifest.json")]) == 1

    # verify streams it back (with the identity from a file for an encrypted one)
    tool_env = {**env, "BACKUP_AGE_IDENTITY_FILE": str(age_key.identity)}
    verified = run_runner(tool_env, "verify", "latest")
    assert verified.returncode == 0, verified.stderr
    assert '"event":"verify.ok"' in verified.stderr

    # restore from the bucket into an empty database; same rows, same checksums
    target = f"{dump_world.conn.dbname}_r"[:63]
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    try:
        admin_pgpass = dump_world.base / "admin-pgpass"
        admin_pgpass.write_text(pgpass_line(pg_cluster.admin, "*"))
        admin_pgpass.chmod(0o600)
        restore_env = {**tool_env, "PGUSER": pg_cluster.admin.user, "PGPASSFILE": str(admin_pgpass)}
        restored = run_runner(restore_env, "restore", newest, "--target-db", target)
        assert restored.returncode == 0, restored.stderr
        source = pg_cluster.admin.with_db(dump_world.conn.dbname)
        assert table_fingerprints(pg_cluster, source) == table_fingerprints(
            pg_cluster, pg_cluster.admin.with_db(target)
        )
    finally:
        pg_cluster.drop_database(target)

    # the canary credentials: not in any process's argv/env, output, status or object
    assert sampler.samples > 0
    assert sampler.hits == []
    for result in (first, second, verified, restored):
        assert not any(n in result.stdout + result.stderr for n in needles)
    assert not any(n in dump_world.termlog.read_text() for n in needles)
    for key in object_server.keys(bucket):
        if key.endswith(".json"):
            assert not any(n in object_server.read(bucket, key).decode() for n in needles)
    assert list(dump_world.tmp.iterdir()) == []


def test_encrypted_bytes_are_unreadable_and_a_wrong_identity_fails_clearly(
    dump_world: DumpWorld,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    age_key: AgeKey,
    tmp_path: Path,
) -> None:
    bucket = bucket_of(s3_server)
    env = object_env(
        dump_world, s3_server, bucket, BACKUP_AGE_RECIPIENTS=age_key.recipient,
        BACKUP_COMPRESSION="none",
    )  # fmt: skip
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    artifact = str(json.loads(dump_world.termlog.read_text())["artifact"])
    stored = s3_server.read(bucket, artifact)
    assert stored.startswith(b"age-encryption.org/v1\n")
    # uncompressed, so only the encryption can hide the archive header and the names
    for clear in (b"PGDMP", b"submissions", b"courses", b"CREATE TABLE"):
        assert clear not in stored

    from tests.support.objects import make_age_key

    wrong = make_age_key(tmp_path / "wrong")
    bad = run_runner({**env, "BACKUP_AGE_IDENTITY_FILE": str(wrong.identity)}, "verify", artifact)
    assert bad.returncode == 7, bad.stderr
    assert "no identity matched" in bad.stderr
    missing = run_runner(env, "verify", artifact)
    assert missing.returncode == 2
    assert "BACKUP_AGE_IDENTITY_FILE" in missing.stderr
    with_identity = {**env, "BACKUP_AGE_IDENTITY_FILE": str(age_key.identity)}
    good = run_runner(with_identity, "verify", artifact)
    assert good.returncode == 0, good.stderr
    assert wrong.secret_line not in bad.stderr
    assert age_key.secret_line not in good.stderr


def test_s3_server_side_encryption_headers_are_sent(
    dump_world: DumpWorld, s3_server: ObjectServer, bucket_of: Callable[[ObjectServer], str]
) -> None:
    from tests.harness.faultproxy import FaultProxy

    bucket = bucket_of(s3_server)
    with FaultProxy(s3_server.port) as proxy:
        env = object_env(
            dump_world, s3_server, bucket, **s3_server.runner_env(bucket, proxy.endpoint),
            BACKUP_S3_SSE="AES256", BACKUP_S3_STORAGE_CLASS="STANDARD",
        )  # fmt: skip
        result = run_runner(env)
    assert result.returncode == 0, result.stderr
    artifact = str(json.loads(dump_world.termlog.read_text())["artifact"])
    puts = [r for r in proxy.seen if r.method == "PUT" and r.path.endswith(artifact)]
    assert puts
    assert all(r.headers.get("x-amz-server-side-encryption") == "AES256" for r in puts[:1])
    assert s3_server.read(bucket, artifact)  # the server accepted and stored it


def test_a_dump_of_several_parts_uploads_and_verifies_on_each_server(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    object_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
) -> None:
    from tests.support.objects import add_noise

    add_noise(pg_cluster, dump_world.conn, 30)
    bucket = bucket_of(object_server)
    env = object_env(
        dump_world,
        object_server,
        bucket,
        BACKUP_COMPRESSION="none",
        BACKUP_EXPECTED_SIZE_BYTES="1000000",
    )  # fmt: skip  (8 MiB parts: four or more for ~30 MB)
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    term = json.loads(dump_world.termlog.read_text())
    assert term["sizeBytes"] > 3 * 8 * 1024 * 1024
    stored = object_server.read(bucket, str(term["artifact"]))
    assert len(stored) == term["sizeBytes"]
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == term["sha256"]
    assert all(not k.startswith(".mpu/") for k in object_server.keys(bucket))
    verified = run_runner(env, "verify", "latest")
    assert verified.returncode == 0, verified.stderr
