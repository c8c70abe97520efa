"""Faults mid-upload against real SeaweedFS behind a fault-injecting loopback proxy.

Whatever breaks (403 on the first part, 500 on the last, a full bucket, the server
going away, SIGTERM, the deadline), the run fails with its own exit code and reason,
no object appears under a final artifact name, the multipart upload is aborted (where
the server is still there to hear it), and the previous good backup stays `latest`.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import faultproxy
from tests.harness.faultproxy import FaultProxy
from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import Conn, PgCluster
from tests.harness.wait import wait_for
from tests.support.dump import DumpWorld, create_dump_role, run_runner, start_runner
from tests.support.objects import add_noise, object_env

PART = 8 * 1024 * 1024


@dataclass
class Scene:
    world: DumpWorld
    server: ObjectServer
    bucket: str
    latest: bytes
    artifact: str
    artifact_sha: str
    keys: set[str]

    def env(self, proxy: FaultProxy, **extra: str) -> dict[str, str]:
        return object_env(
            self.world,
            self.server,
            self.bucket,
            **self.server.runner_env(self.bucket, proxy.endpoint),
            BACKUP_COMPRESSION="none",  # ~30 MB: four parts of 8 MiB
            BACKUP_EXPECTED_SIZE_BYTES="1000000",
            BACKUP_OBJECT_TIMEOUT_SECONDS="5",
            **extra,
        )

    def assert_untouched(self) -> None:
        keys = set(self.server.keys(self.bucket))
        new = keys - self.keys
        # at most the failed run's manifest; never an artifact under a final name
        assert all(k.endswith(".manifest.json") for k in new), new
        for key in new:
            assert json.loads(self.server.read(self.bucket, key))["status"] == "failed"
        assert self.server.read(self.bucket, "t.latest.json") == self.latest
        stored = self.server.read(self.bucket, self.artifact)
        assert hashlib.sha256(stored).hexdigest() == self.artifact_sha


@pytest.fixture
def scene(
    pg_cluster: PgCluster,
    pg_db: Conn,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    tmp_path: Path,
) -> Scene:
    role = create_dump_role(pg_cluster, pg_db.dbname)
    add_noise(pg_cluster, role, 30)
    world = DumpWorld(tmp_path, role)
    bucket = bucket_of(s3_server)
    good = run_runner(object_env(world, s3_server, bucket))  # the previous good backup
    assert good.returncode == 0, good.stderr
    latest = s3_server.read(bucket, "t.latest.json")
    artifact = json.loads(latest)["artifact"]
    sha = hashlib.sha256(s3_server.read(bucket, artifact)).hexdigest()
    return Scene(world, s3_server, bucket, latest, artifact, sha, set(s3_server.keys(bucket)))


def _term(scene: Scene) -> dict[str, object]:
    data: dict[str, object] = json.loads(scene.world.termlog.read_text())
    return data


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        (faultproxy.first_part(403, "AccessDenied"), "access denied"),
        (faultproxy.short_part(500, "InternalError", PART), "500"),
        (faultproxy.quota(12 * 1024 * 1024), "quota"),
    ],
    ids=["403-on-the-first-part", "500-on-the-last-part", "full-bucket"],
)
def test_an_http_error_mid_upload_fails_the_run_and_aborts_the_upload(
    scene: Scene, rule: faultproxy.Rule, needle: str
) -> None:
    with FaultProxy(scene.server.port, rule=rule) as proxy:
        result = run_runner(scene.env(proxy))
    assert result.returncode == 6, result.stderr
    term = _term(scene)
    assert (term["status"], term["reason"]) == ("failed", "StorageError")
    assert needle in str(term["message"]).lower()
    assert proxy.parts >= 1  # the fault really hit a multipart upload
    scene.assert_untouched()
    assert scene.server.pending_uploads(scene.bucket) == 0


def test_a_failing_later_segment_aborts_the_earlier_ones_and_leaves_no_object(
    scene: Scene,
) -> None:
    # 2 parts per object: ~30 MB is three parts in two objects; the short last part of the
    # second object fails when the upload is completed, after the first object was filled
    rule = faultproxy.short_part(500, "InternalError", PART)
    with FaultProxy(scene.server.port, rule=rule) as proxy:
        result = run_runner(scene.env(proxy, BACKUP_OBJECT_SEGMENT_PARTS="2"))
    assert result.returncode == 6, result.stderr
    assert _term(scene)["reason"] == "StorageError"
    assert proxy.parts >= 3  # the first object's two parts and the second's
    scene.assert_untouched()  # no artifact and no segment object under any name
    assert not [k for k in scene.server.keys(scene.bucket) if ".seg-" in k]
    assert scene.server.pending_uploads(scene.bucket) == 0  # both multipart uploads aborted


def test_the_server_going_away_mid_upload_fails_the_run_without_a_final_object(
    scene: Scene,
) -> None:
    with FaultProxy(scene.server.port, die_after_parts=1) as proxy:
        result = run_runner(scene.env(proxy), timeout=180)
    assert result.returncode == 6, result.stderr
    assert _term(scene)["reason"] == "StorageError"
    # The abort cannot reach a server that is gone; the unfinished upload stays invisible
    # (docs/dump.md: a lifecycle rule removes it). Nothing is under a final name.
    scene.assert_untouched()


@pytest.mark.parametrize("how", ["SIGTERM", "deadline"])
def test_sigterm_or_the_deadline_mid_upload_aborts_it_with_exit_5(scene: Scene, how: str) -> None:
    extra = {"BACKUP_TIMEOUT_SECONDS": "6"} if how == "deadline" else {}
    with FaultProxy(scene.server.port, delay_parts=1.5) as proxy:
        proc = start_runner(scene.env(proxy, **extra))
        wait_for(lambda: proxy.parts >= 1, 60, "the first part upload")
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err.decode()[-3000:]
    term = _term(scene)
    assert term["reason"] == "Timeout"
    assert ("SIGTERM" if how == "SIGTERM" else "timed out") in str(term["message"])
    scene.assert_untouched()
    assert scene.server.pending_uploads(scene.bucket) == 0
