"""learnops-dump vs a bare pg_dump, and size/time per compression (figures, not assertions).

Wall time on a shared 2-core machine is noisy, so CPU seconds (the run and all its
children, from getrusage) are reported beside it: they show the runner's own cost.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import threading
import time
from pathlib import Path

from tests.harness.postgres import PgCluster
from tests.support.dump import DumpWorld, create_dump_role, start_runner

ROUNDS = 7
PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class PeakRss:
    """Samples VmHWM of one process until it exits."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.kib = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                text = self.status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.kib = max(self.kib, int(line.split()[1]))
            time.sleep(0.02)

    def join(self) -> int:
        self._thread.join()
        return self.kib


def _runner(world: DumpWorld, compression: str, verify: str) -> tuple[float, float, int, int]:
    """(wall s, cpu s, artifact bytes, peak RSS KiB) of one `learnops-dump run`."""
    env = world.env(
        BACKUP_COMPRESSION=compression,
        BACKUP_VERIFY=verify,
        BACKUP_TIMEOUT_SECONDS="1800",
        BACKUP_RETENTION="last=1",
    )
    cpu0, started = _children_cpu(), time.perf_counter()
    proc = start_runner(env)
    rss = PeakRss(proc.pid)
    _, err = proc.communicate()
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu0
    peak = rss.join()
    assert proc.returncode == 0, err.decode()[-2000:]
    manifest = json.loads((world.storage / "t.latest.json").read_text())
    return elapsed, cpu, int(manifest["sizeBytes"]), peak


def _bare(world: DumpWorld, level: int) -> tuple[float, float]:
    out = world.base / "bare.dump"
    env = {k: v for k, v in world.env().items() if k.startswith("PG")} | {"PATH": "/usr/bin:/bin"}
    cpu0, started = _children_cpu(), time.perf_counter()
    subprocess.run([PG_DUMP, "-Fc", f"-Z{level}", "-f", str(out)], env=env, check=True)
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu0
    out.unlink()
    return elapsed, cpu


def test_dump_benchmark(pg_cluster: PgCluster, bench_db: str, tmp_path: Path) -> None:
    world = DumpWorld(tmp_path, create_dump_role(pg_cluster, bench_db, createdb=False))
    db_mb = pg_cluster.database_size(bench_db) / 2**20
    load = os.getloadavg()[0]
    lines = [
        f"\ndatabase {bench_db}: {db_mb:.0f} MiB (pgbench scale 70), {os.cpu_count()} cores,"
        f" load average {load:.1f} at start"
    ]

    # 1. runner vs bare `pg_dump -Fc -Z1 -f FILE` (same compression), alternating.
    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "none": [], "list": []}
    peaks = []
    for _ in range(ROUNDS):
        rows["bare"].append(_bare(world, 1))
        for verify in ("none", "list"):
            wall, cpu, _size, peak = _runner(world, "gzip:1", verify)
            rows[verify].append((wall, cpu))
            peaks.append(peak)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in (0, 1)) for k, v in rows.items()}
    best = {k: min(x[0] for x in v) for k, v in rows.items()}
    lines.append(
        f"gzip:1, {ROUNDS} alternating rounds: wall median / wall min / cpu median (s),"
        " wall ratios median / min (min is least disturbed by other load)"
    )
    for key, label in (
        ("bare", "bare pg_dump -Fc -Z1 -f FILE"),
        ("none", "learnops-dump verify=none"),
        ("list", "learnops-dump verify=list"),
    ):
        wall, cpu = med[key]
        lines.append(
            f"  {label:<30} {wall:6.2f} / {best[key]:6.2f} / {cpu:5.2f}"
            f"   ratio {wall / med['bare'][0]:.3f} / {best[key] / best['bare']:.3f}"
        )
    lines += [
        f"runner peak RSS (VmHWM), max over runs: {max(peaks) / 1024:.1f} MiB",
        "",
        f"{'compression':<12} {'where':<10} {'wall s':>8} {'cpu s':>8} {'MiB':>8} {'ratio':>6}",
    ]

    # 2. size and time per algorithm and level (custom format, through the runner).
    for comp in ("none", "gzip:1", "gzip:6", "zstd:1", "zstd:6", "lz4:1", "lz4:9"):
        wall, cpu, size, _peak = _runner(world, comp, "none")
        where = "-" if comp == "none" else ("pg_dump" if comp.startswith("gzip") else "external")
        lines.append(
            f"{comp:<12} {where:<10} {wall:>8.2f} {cpu:>8.2f} {size / 2**20:>8.1f}"
            f" {db_mb * 2**20 / size:>6.1f}"
        )
    print("\n".join(lines))
