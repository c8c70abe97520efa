"""What a bucket run refuses, and age on a PVC: each refused before anything is written,
with exit 2 and a reason that says what to do (docs/dump.md, "Object storage and encryption").

Several databases and globals (roles) are PVC-only: a bucket run takes one database. age is
object-storage-only: the PVC's restore features read the archive by seeking (parallel
pg_restore, restore policies), which an age stream does not allow without a plaintext copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.harness.objectservers import ObjectServer
from tests.support.dump import DumpWorld, run_runner
from tests.support.objects import AgeKey, object_env


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"BACKUP_DATABASES": '["app","reports"]'}, "BACKUP_DATABASES/BACKUP_ALL_DATABASES"),
        ({"BACKUP_ALL_DATABASES": "true"}, "BACKUP_DATABASES/BACKUP_ALL_DATABASES"),
        ({"BACKUP_GLOBALS": "true"}, "BACKUP_GLOBALS needs a PVC"),
    ],
    ids=["databases", "all-databases", "globals"],
)
def test_several_databases_or_globals_to_a_bucket_are_refused_before_anything_is_written(
    dump_world: DumpWorld,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    extra: dict[str, str],
    needle: str,
) -> None:
    bucket = bucket_of(s3_server)
    result = run_runner(object_env(dump_world, s3_server, bucket, **extra))
    assert result.returncode == 2, result.stderr
    term = json.loads(dump_world.termlog.read_text())
    assert (term["status"], term["reason"]) == ("failed", "ConfigError")
    assert needle in term["message"]
    assert "one database per run" in term["message"]
    assert s3_server.keys(bucket) == []  # not even a failed manifest: nothing was started


def test_restoring_the_globals_of_a_bucket_backup_is_refused(
    dump_world: DumpWorld, s3_server: ObjectServer, bucket_of: Callable[[ObjectServer], str]
) -> None:
    bucket = bucket_of(s3_server)
    env = object_env(dump_world, s3_server, bucket)
    made = run_runner(env)
    assert made.returncode == 0, made.stderr
    result = run_runner(env, "restore", "latest", "--target-db", "x_restored", "--with-globals")
    assert result.returncode == 2, result.stderr
    assert "--with-globals needs a PVC" in result.stderr


def test_age_recipients_on_a_pvc_are_refused_and_nothing_unencrypted_is_written(
    dump_world: DumpWorld, age_key: AgeKey
) -> None:
    result = run_runner(dump_world.env(BACKUP_AGE_RECIPIENTS=age_key.recipient))
    assert result.returncode == 2, result.stderr
    term = json.loads(dump_world.termlog.read_text())
    assert term["reason"] == "ConfigError"
    assert "BACKUP_AGE_RECIPIENTS needs object storage" in term["message"]
    assert list(dump_world.storage.iterdir()) == []  # never a silently unencrypted backup
