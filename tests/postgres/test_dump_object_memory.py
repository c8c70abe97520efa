"""The runner's memory stays under 64 MiB while it streams a big dump to S3 (SeaweedFS)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, create_dump_role, start_runner
from tests.support.objects import object_env

RSS_BOUND_KIB = 64 * 1024
TB = 10**12


@pytest.mark.parametrize(
    "plan",
    [
        {},  # the part planned from the database's size (8 MiB here)
        # planned for 5 TB: the largest part the runner ever buffers (MAX_PART), and the
        # artifact continued in segment objects (4 parts each) as a 5 TB dump would be
        {"BACKUP_EXPECTED_SIZE_BYTES": str(5 * TB), "BACKUP_OBJECT_SEGMENT_PARTS": "4"},
    ],
    ids=["planned-for-the-database", "planned-for-5-tb-segmented"],
)
def test_the_runner_stays_under_64_mib_streaming_a_big_dump_to_s3(
    plan: dict[str, str],
    pg_cluster: PgCluster,
    big_db: str,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    tmp_path: Path,
) -> None:
    size = pg_cluster.database_size(big_db)
    world = DumpWorld(tmp_path, create_dump_role(pg_cluster, big_db, createdb=False))
    bucket = bucket_of(s3_server)
    # uncompressed: every byte of the dump passes through the runner and its part buffers
    env = object_env(
        world, s3_server, bucket, BACKUP_COMPRESSION="none", BACKUP_TIMEOUT_SECONDS="900", **plan
    )
    peak = 0
    started = time.monotonic()
    proc = start_runner(env)
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.05)
    _, err = proc.communicate()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err.decode()[-3000:]
    latest = json.loads(s3_server.read(bucket, "t.latest.json"))
    artifact = int(latest["sizeBytes"])
    objects = int(latest["location"].get("segments", "1"))
    if plan:
        assert objects >= 3, latest["location"]  # really segmented
    print(
        f"\ndatabase {size / 2**20:.0f} MiB, artifact {artifact / 2**20:.0f} MiB in {objects}"
        f" object(s),"
        f" runner peak RSS {peak / 1024:.1f} MiB, {artifact / 2**20 / elapsed:.1f} MiB/s"
        " (dump + upload + verification read-back)"
    )
    assert artifact > 5 * RSS_BOUND_KIB * 1024  # far more than the bound passed through
    assert 0 < peak <= RSS_BOUND_KIB
