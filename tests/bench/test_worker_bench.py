"""Worker throughput and wake-up latency next to a bare SQL claim/complete loop (the floor).

Measured from outside, as a user would: 20,000 no-op jobs queued, one `learning-worker run`
process with default settings (only WORKER_CONCURRENCY set, and the HTTP port off so runs
cannot collide on a shared machine), wall time from its launch until nothing is queued or
running, the queue watched over one connection.

Run: uv run pytest tests/bench/test_worker_bench.py -s -p no:cacheprovider
With LEARNOPS_BENCH_BEFORE=/path/to/an/older/images/learning-worker the older worker runs in
the same session, interleaved, on its own schema: figures side by side, ratios printed.
Assertions only catch a broken setup, not a slow machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.postgres import Conn, PgCluster
from tests.support.worker import ROOT, connect, scalar

JOBS = 20_000
REPEATS = 3
LATENCY_SAMPLES = 100
WATCH_EVERY_SECONDS = 0.01
OWN_SOURCE = ROOT / "images" / "learning-worker"


@dataclass(frozen=True)
class Variant:
    name: str
    source: Path
    db: Conn

    def env(self, **settings: str) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "WORKER_", "DATABASE_URL", "OPENAI_", "FEEDBACK_"))
        }
        path = os.pathsep.join([str(self.source), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return {
            **base,
            "PYTHONPATH": path,
            "DATABASE_URL": self.db.url(),
            "WORKER_HTTP_PORT": "0",
            **settings,
        }

    def cli(self, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "learnops_worker", *args],
            env=self.env(**settings),
            cwd=ROOT,
        )


@pytest.fixture
def variants(pg_cluster: PgCluster) -> Iterator[list[Variant]]:
    sources = [("after", OWN_SOURCE)]
    if before := os.environ.get("LEARNOPS_BENCH_BEFORE"):
        sources.insert(0, ("before", Path(before)))
    out = []
    for name, source in sources:
        dbname = f"bench_worker_{name}"
        pg_cluster.drop_database(dbname)
        variant = Variant(name, source, pg_cluster.create_database(dbname))
        assert variant.cli("migrate").wait(120) == 0
        out.append(variant)
    yield out
    for v in out:
        pg_cluster.drop_database(v.db.dbname)


def fill(conn: Conn, n: int) -> None:
    with connect(conn) as c:
        c.execute("TRUNCATE learnops_jobs")
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload) "
            "SELECT 'noop', '{}' FROM generate_series(1, %s)",
            (n,),
        )
        c.execute("VACUUM ANALYZE learnops_jobs")


def rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def drain_seconds(variant: Variant, concurrency: int) -> tuple[float, int]:
    """Launch to empty, watched over one connection; and the worker's peak RSS in kB."""
    fill(variant.db, JOBS)
    with connect(variant.db) as watch:
        start = time.monotonic()
        proc = variant.cli("run", WORKER_CONCURRENCY=str(concurrency))
        try:
            while True:
                row = watch.execute(
                    "SELECT EXISTS (SELECT 1 FROM learnops_jobs WHERE status = 'queued') "
                    "OR EXISTS (SELECT 1 FROM learnops_jobs WHERE status = 'running')"
                ).fetchone()
                if row is not None and not row[0]:
                    break
                assert proc.poll() is None, "the worker died"
                if time.monotonic() - start > 600:
                    raise AssertionError("the queue did not drain")
                time.sleep(WATCH_EVERY_SECONDS)
            elapsed = time.monotonic() - start
            peak = rss_kb(proc.pid)[1]
        finally:
            proc.terminate()
            assert proc.wait(60) == 0
    done = scalar(variant.db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
    assert done == JOBS
    return elapsed, peak


def bare_loop(conn: Conn, threads: int, per_claim: int) -> float:
    """The floor: N threads, SKIP LOCKED claim with a fresh token, complete fenced by it."""
    fill(conn, JOBS)
    claim = """
        WITH c AS (SELECT id FROM learnops_jobs WHERE status = 'queued' AND run_after <= now()
                   ORDER BY priority DESC, run_after, id LIMIT %s FOR UPDATE SKIP LOCKED)
        UPDATE learnops_jobs j SET status = 'running', attempts = j.attempts + 1,
               lease_token = gen_random_uuid(), lease_expires_at = now() + interval '30 s'
        FROM c WHERE j.id = c.id RETURNING j.id, j.lease_token"""
    complete = """
        UPDATE learnops_jobs j SET status = 'succeeded', lease_token = NULL,
               lease_expires_at = NULL, finished_at = now()
        FROM unnest(%s::bigint[], %s::uuid[]) AS d(id, token)
        WHERE j.id = d.id AND j.lease_token = d.token RETURNING j.id"""

    def loop() -> None:
        with connect(conn) as c:
            while rows := c.execute(claim, (per_claim,)).fetchall():
                done = c.execute(complete, ([r[0] for r in rows], [r[1] for r in rows])).fetchall()
                assert len(done) == len(rows)

    start = time.monotonic()
    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.monotonic() - start


def latency(variant: Variant) -> list[float]:
    """Enqueue->claim seconds for jobs enqueued one by one into an idle worker."""
    with connect(variant.db) as c:
        c.execute("TRUNCATE learnops_jobs")
    p = variant.cli("run", WORKER_POLL_SECONDS="30", WORKER_LOG_LEVEL="WARNING")
    try:
        time.sleep(2.0)  # started and listening
        with connect(variant.db) as c:
            for _ in range(LATENCY_SAMPLES):
                c.execute("INSERT INTO learnops_jobs (kind) VALUES ('noop')")
                time.sleep(0.03)
        deadline = time.monotonic() + 60
        while scalar(variant.db, "SELECT count(*) FROM learnops_jobs WHERE status <> 'succeeded'"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with connect(variant.db) as c:
            rows: list[Any] = c.execute(
                "SELECT extract(epoch FROM started_at - created_at) FROM learnops_jobs"
            ).fetchall()
    finally:
        p.terminate()
        p.wait(30)
    return sorted(float(r[0]) for r in rows)


def test_worker_throughput_and_latency_against_the_bare_sql_floor(
    variants: list[Variant],
) -> None:
    figures: list[str] = []
    floor_db = variants[-1].db
    for threads, per_claim in ((4, 1), (4, 10)):
        secs = bare_loop(floor_db, threads, per_claim)
        figures.append(
            f"bare SQL loop {threads} threads x {per_claim}/claim: {JOBS / secs:8.0f} jobs/s"
        )
    rates: dict[tuple[str, int], list[float]] = {}
    peaks: dict[str, int] = {}
    for concurrency, repeats in ((4, REPEATS), (1, 1)):
        for _ in range(repeats):
            for v in variants:  # interleaved: a load spike hits both alike
                secs, peak = drain_seconds(v, concurrency)
                rates.setdefault((v.name, concurrency), []).append(JOBS / secs)
                peaks[v.name] = max(peaks.get(v.name, 0), peak)
    for (name, concurrency), runs in rates.items():
        figures.append(
            f"worker [{name}] 1 process x concurrency {concurrency}: median "
            f"{statistics.median(runs):6.0f} jobs/s (runs: {', '.join(f'{r:.0f}' for r in runs)}; "
            f"peak RSS {peaks[name] / 1024:.0f} MiB)"
        )
    if len(variants) == 2:
        for concurrency in (4, 1):
            ratio = statistics.median(rates[("after", concurrency)]) / statistics.median(
                rates[("before", concurrency)]
            )
            figures.append(f"after/before at concurrency {concurrency}: {ratio:.2f}x")
    for v in variants:
        lat = latency(v)
        p50 = statistics.median(lat) * 1000
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000
        figures.append(
            f"enqueue->start latency [{v.name}] (idle, NOTIFY, poll 30 s): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        assert p99 < 1000
    print("\n" + "\n".join(figures))
