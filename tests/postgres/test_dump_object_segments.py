"""An artifact larger than one object's part limit continues in segment objects.

The part is capped (bounded memory), so a dump beyond MAX_PART x 10,000 parts is stored as
`<name>`, `<name>.seg-00002`, ... Here BACKUP_OBJECT_SEGMENT_PARTS=2 makes a ~40 MB dump take
three objects of 8 MiB parts on each real server; verify and restore read them as one stream,
retention removes them together, and a listing shows the artifact once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from psycopg import sql

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, pgpass_line, run_runner
from tests.support.objects import add_noise, object_env, table_fingerprints

MiB = 1 << 20


def test_a_dump_beyond_one_objects_part_limit_is_segmented_restored_and_pruned_whole(
    dump_world: DumpWorld,
    pg_cluster: PgCluster,
    object_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
) -> None:
    add_noise(pg_cluster, dump_world.conn, 40)
    bucket = bucket_of(object_server)
    env = object_env(
        dump_world, object_server, bucket,
        BACKUP_COMPRESSION="none", BACKUP_EXPECTED_SIZE_BYTES="1000000",  # 8 MiB parts
        BACKUP_OBJECT_SEGMENT_PARTS="2",  # 16 MiB per object
        BACKUP_RETENTION="last=1,daily=0,weekly=0,monthly=0",
    )  # fmt: skip
    first = run_runner(env)
    assert first.returncode == 0, first.stderr
    term = json.loads(dump_world.termlog.read_text())
    artifact = str(term["artifact"])
    size = int(term["sizeBytes"])
    expected_objects = -(-size // (16 * MiB))
    assert expected_objects >= 3
    segments = [f"{artifact}.seg-{n:05d}" for n in range(2, expected_objects + 1)]
    keys = object_server.keys(bucket)
    assert [k for k in keys if k.startswith(artifact)] == [artifact, *segments]
    assert term["location"]["key"] == artifact  # the status names the artifact, once
    manifest = json.loads(object_server.read(bucket, "t.latest.json"))
    assert manifest["location"]["segments"] == str(expected_objects)  # the manifest says more
    pieces = [object_server.read(bucket, k) for k in (artifact, *segments)]
    assert [len(p) for p in pieces[:-1]] == [16 * MiB] * (expected_objects - 1)
    whole = b"".join(pieces)
    assert len(whole) == size
    assert hashlib.sha256(whole).hexdigest() == term["sha256"]
    assert whole.startswith(b"PGDMP")
    assert object_server.pending_uploads(bucket) in (0, -1)

    # verify and restore stream the segments as one artifact
    verified = run_runner(env, "verify", "latest")
    assert verified.returncode == 0, verified.stderr
    target = f"{dump_world.conn.dbname}_s"[:63]
    with pg_cluster.connect() as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(target)))
    try:
        admin_pgpass = dump_world.base / "admin-pgpass"
        admin_pgpass.write_text(pgpass_line(pg_cluster.admin, "*"))
        admin_pgpass.chmod(0o600)
        restore_env = {**env, "PGUSER": pg_cluster.admin.user, "PGPASSFILE": str(admin_pgpass)}
        restored = run_runner(restore_env, "restore", "latest", "--target-db", target)
        assert restored.returncode == 0, restored.stderr
        source = pg_cluster.admin.with_db(dump_world.conn.dbname)
        assert table_fingerprints(pg_cluster, source) == table_fingerprints(
            pg_cluster, pg_cluster.admin.with_db(target)
        )
    finally:
        pg_cluster.drop_database(target)

    # a second run: retention (last=1) removes the first artifact with all its segments
    second = run_runner(env)
    assert second.returncode == 0, second.stderr
    keys = object_server.keys(bucket)
    assert not [k for k in keys if k.startswith(artifact)]
    newest = str(json.loads(object_server.read(bucket, "t.latest.json"))["artifact"])
    assert f"{newest}.seg-00002" in keys
