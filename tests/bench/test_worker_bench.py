"""Worker throughput and wake-up latency next to a bare SQL claim/complete loop (the floor).

Run: uv run pytest tests/bench/test_worker_bench.py -s -p no:cacheprovider
Figures are printed; assertions only catch a broken setup, not a slow machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_worker import ROOT, connect, run_cli, scalar, wait_until, worker_env
from tests.harness.postgres import Conn

JOBS = 20_000
LATENCY_SAMPLES = 100


@pytest.fixture
def worker_bench_db(pg_db: Conn) -> Conn:
    assert run_cli(pg_db, "migrate").returncode == 0
    return pg_db


def fill(conn: Conn, n: int) -> None:
    with connect(conn) as c:
        c.execute("TRUNCATE learnops_jobs")
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload) "
            "SELECT 'noop', '{}' FROM generate_series(1, %s)",
            (n,),
        )
        c.execute("VACUUM ANALYZE learnops_jobs")


def left(conn: Conn) -> int:
    return int(
        scalar(conn, "SELECT count(*) FROM learnops_jobs WHERE status IN ('queued', 'running')")
    )


def rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def run_workers(
    conn: Conn, processes: int, concurrency: int
) -> tuple[float, list[tuple[int, int]]]:
    """Seconds from launch until the queue is empty, and each worker's (RSS, peak RSS) in kB."""
    fill(conn, JOBS)
    env = worker_env(
        conn,
        WORKER_CONCURRENCY=str(concurrency),
        WORKER_LEASE_SECONDS="10",
        WORKER_HEARTBEAT_SECONDS="1",
        WORKER_POLL_SECONDS="1",
        WORKER_LOG_LEVEL="WARNING",
    )
    start = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-m", "learnops_worker", "run"], env=env, cwd=ROOT)
        for _ in range(processes)
    ]
    try:
        wait_until(lambda: left(conn) == 0, 300, "the queue to drain")
        elapsed = time.monotonic() - start
        mem = [rss_kb(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(30) == 0
    assert scalar(conn, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'") == JOBS
    return elapsed, mem


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


def latency(conn: Conn) -> list[float]:
    """Enqueue->claim seconds for jobs enqueued one by one into an idle worker."""
    with connect(conn) as c:
        c.execute("TRUNCATE learnops_jobs")
    env = worker_env(
        conn, WORKER_CONCURRENCY="1", WORKER_POLL_SECONDS="30", WORKER_LOG_LEVEL="WARNING"
    )
    p = subprocess.Popen([sys.executable, "-m", "learnops_worker", "run"], env=env, cwd=ROOT)
    try:
        time.sleep(1.5)  # started and listening
        with connect(conn) as c:
            for _ in range(LATENCY_SAMPLES):
                c.execute("INSERT INTO learnops_jobs (kind) VALUES ('noop')")
                time.sleep(0.03)
        wait_until(lambda: left(conn) == 0, 30, "latency jobs to finish")
        with connect(conn) as c:
            rows: list[Any] = c.execute(
                "SELECT extract(epoch FROM started_at - created_at) FROM learnops_jobs"
            ).fetchall()
    finally:
        p.terminate()
        p.wait(30)
    return sorted(float(r[0]) for r in rows)


def test_worker_throughput_and_latency_against_the_bare_sql_floor(worker_bench_db: Conn) -> None:
    figures: list[str] = []
    for threads, per_claim in ((4, 1), (4, 10)):
        secs = bare_loop(worker_bench_db, threads, per_claim)
        figures.append(
            f"bare SQL loop {threads} threads x {per_claim}/claim: {JOBS / secs:8.0f} jobs/s"
        )
    for processes, concurrency in ((1, 1), (1, 4), (4, 1)):
        secs, mem = run_workers(worker_bench_db, processes, concurrency)
        peak = max(m[1] for m in mem) / 1024
        figures.append(
            f"worker {processes} process(es) x concurrency {concurrency}: "
            f"{JOBS / secs:8.0f} jobs/s (launch to empty, {secs:.1f}s; "
            f"peak RSS {peak:.0f} MiB/process)"
        )
    lat = latency(worker_bench_db)
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    figures.append(
        f"enqueue->start latency (idle, NOTIFY, poll 30 s): p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print("\n" + "\n".join(figures))
    assert p99 < 1000
