"""Off-site backups: bare `pg_dump -Fc -Z0 | zstd -3 > file` vs learnops-dump to S3 (SeaweedFS).

Side by side in one run, alternating rounds on the same ~1 GB database: the runner streams
pg_dump -> zstd:3 -> [age] -> multipart upload, then reads the object back to verify it
(checksum + the whole archive). Figures, not assertions about wall time (a shared machine).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.test_dump_bench import PG_DUMP, PeakRss
from tests.harness.objectservers import ObjectServer
from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, create_dump_role, start_runner
from tests.support.objects import make_age_key, object_env

ROUNDS = 3


def _bare(world: DumpWorld) -> float:
    out = world.base / "bare.dump.zst"
    env = {k: v for k, v in world.env().items() if k.startswith("PG")} | {"PATH": "/usr/bin:/bin"}
    started = time.perf_counter()
    with open(out, "wb") as f:
        dump = subprocess.Popen([PG_DUMP, "-Fc", "-Z0"], env=env, stdout=subprocess.PIPE)
        zstd = subprocess.run(["zstd", "-3", "-q", "-c"], stdin=dump.stdout, stdout=f, check=True)
        assert dump.stdout is not None
        dump.stdout.close()
        assert dump.wait() == 0
        assert zstd.returncode == 0
    elapsed = time.perf_counter() - started
    out.unlink()
    return elapsed


def _runner(env: dict[str, str], server: ObjectServer, bucket: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    proc = start_runner(env)
    rss = PeakRss(proc.pid)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, err.decode()[-2000:]
    size = int(json.loads(server.read(bucket, "t.latest.json"))["sizeBytes"])
    return elapsed, size, rss.join()


def test_object_storage_benchmark(
    pg_cluster: PgCluster,
    bench_db: str,
    s3_server: ObjectServer,
    bucket_of: Callable[[ObjectServer], str],
    tmp_path: Path,
) -> None:
    world = DumpWorld(tmp_path, create_dump_role(pg_cluster, bench_db, createdb=False))
    key = make_age_key(tmp_path / "age")
    bucket = bucket_of(s3_server)
    base = {"BACKUP_COMPRESSION": "zstd:3", "BACKUP_TIMEOUT_SECONDS": "1800",
            "BACKUP_RETENTION": "last=1,daily=0,weekly=0,monthly=0"}  # fmt: skip
    variants = {
        "s3": object_env(world, s3_server, bucket, **base),
        "s3+age": object_env(world, s3_server, bucket, **base, BACKUP_AGE_RECIPIENTS=key.recipient),
        "s3, verify=none": object_env(world, s3_server, bucket, **base, BACKUP_VERIFY="none"),
        # uncompressed: the upload itself is the bottleneck, so this is the upload throughput
        "s3, none, verify=none": object_env(
            world, s3_server, bucket, **{**base, "BACKUP_COMPRESSION": "none"}, BACKUP_VERIFY="none"
        ),
    }
    walls: dict[str, list[float]] = {"bare": [], **{k: [] for k in variants}}
    sizes: dict[str, int] = {}
    peaks: dict[str, int] = {}
    for _ in range(ROUNDS):
        walls["bare"].append(_bare(world))
        for name, env in variants.items():
            wall, size, peak = _runner(env, s3_server, bucket)
            walls[name].append(wall)
            sizes[name] = size
            peaks[name] = max(peaks.get(name, 0), peak)
    bare = statistics.median(walls["bare"])
    lines = [
        f"\ndatabase {bench_db}: {pg_cluster.database_size(bench_db) / 2**20:.0f} MiB,"
        f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end;"
        f" {ROUNDS} alternating rounds, wall medians",
        f"  {'bare pg_dump -Fc -Z0 | zstd -3 > file':<40} {bare:6.2f} s",
    ]
    for name in variants:
        wall = statistics.median(walls[name])
        lines.append(
            f"  {'learnops-dump -> ' + name:<40} {wall:6.2f} s  ratio {wall / bare:.3f}"
            f"  object {sizes[name] / 2**20:.1f} MiB"
            f"  {sizes[name] / 2**20 / wall:.1f} MiB/s uploaded"
            f"  peak RSS {peaks[name] / 1024:.1f} MiB"
        )
    print("\n".join(lines))
    assert max(peaks.values()) <= 64 * 1024
