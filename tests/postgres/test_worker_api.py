"""The platform's API (and the CLI on top of it): kinds, payload limits, the database's
clock, idempotent enqueue, cancel, status, and kinds nobody handles."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from learnops_worker import api
from learnops_worker.errors import InvalidKind, InvalidPayload, JobNotFound
from learnops_worker.models import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, JobStatus

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, connect, run_cli, scalar

BAD_KINDS = ["", "Feedback", "feedback ", " feedback", "feed back", "1feedback", "x" * 65, "é"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def count(db: Conn) -> int:
    return int(scalar(db, "SELECT count(*) FROM learnops_jobs"))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_kinds_are_refused_by_the_cli_the_api_and_the_database(
    worker_db: Conn, kind: str
) -> None:
    out = run_cli(worker_db, "enqueue", "--kind", kind)
    assert out.returncode == 2
    assert "invalid job kind" in out.stderr
    with connect(worker_db) as c:
        with pytest.raises(InvalidKind, match="invalid job kind"):
            api.enqueue(c, kind, {})
        with pytest.raises(psycopg.errors.CheckViolation, match="learnops_jobs_kind_check"):
            c.execute("INSERT INTO learnops_jobs (kind) VALUES (%s)", (kind,))
    assert count(worker_db) == 0


def test_payloads_beyond_the_documented_limits_are_refused_everywhere(worker_db: Conn) -> None:
    too_deep = nested(MAX_JSON_DEPTH + 1)
    too_big = {"answer": "x" * MAX_PAYLOAD_BYTES}
    with connect(worker_db) as c:
        for bad, why in [
            (too_deep, "nested deeper than 32"),
            (too_big, "more than the limit of 262144"),
            ({"score": float("nan")}, "nan is not a JSON number"),
            ({"answer": "nul \x00"}, "NUL"),
            ({"answer": "\ud800"}, "lone surrogate"),
        ]:
            with pytest.raises(InvalidPayload, match=why):
                api.enqueue(c, "record", bad)
        for raw in (json.dumps(too_deep), json.dumps(too_big)):
            with pytest.raises(psycopg.errors.CheckViolation, match="learnops_jobs_payload_check"):
                c.execute("INSERT INTO learnops_jobs (kind, payload) VALUES ('record', %s)", (raw,))
        # exactly at the limits: accepted by both
        at_limit = nested(MAX_JSON_DEPTH)
        assert api.enqueue(c, "record", at_limit) > 0
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload) VALUES ('record', %s)",
            (json.dumps(at_limit),),
        )
    for raw in (json.dumps(too_deep), "[" * 5000 + "]" * 5000, '{"x": NaN}'):
        out = run_cli(worker_db, "enqueue", "--kind", "record", "--payload", raw)
        assert out.returncode == 2, out.stderr
        assert "payload" in out.stderr
    assert count(worker_db) == 2


def test_run_after_comes_from_the_database_clock_not_a_skewed_client(
    worker_db: Conn, tmp_path: Path
) -> None:
    # An injected clock: this client's time runs one hour ahead (as with faketime).
    (tmp_path / "sitecustomize.py").write_text(
        "import datetime as _dt, time as _time\n"
        "_SKEW = 3600.0\n"
        "class _Skewed(_dt.datetime):\n"
        "    @classmethod\n"
        "    def now(cls, tz=None):\n"
        "        return _dt.datetime.now.__func__(cls, tz) + _dt.timedelta(seconds=_SKEW)\n"
        "_dt.datetime = _Skewed\n"
        "_real = _time.time\n"
        "_time.time = lambda: _real() + _SKEW\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    out = run_cli(worker_db, "enqueue", "--kind", "record", "--run-after", "30", PYTHONPATH=path)
    assert out.returncode == 0, out.stderr
    delay = scalar(
        worker_db,
        "SELECT extract(epoch FROM run_after - created_at)::float8 FROM learnops_jobs "
        "WHERE id = %s",
        int(out.stdout),
    )
    assert 29 <= delay <= 31
    with connect(worker_db) as c:
        job = api.enqueue(c, "record", {}, run_after=timedelta(minutes=2))
        info = api.status(c, job)
    assert 119 <= (info.run_after - info.created_at).total_seconds() <= 121
    with connect(worker_db) as c:
        when = datetime(2030, 1, 1, tzinfo=UTC)
        assert api.status(c, api.enqueue(c, "record", {}, run_after=when)).run_after == when


def test_concurrent_double_submits_with_one_dedupe_key_make_one_job(worker_db: Conn) -> None:
    submitters, keys = 8, 10
    ids: dict[str, list[int]] = {f"submission:{k}": [] for k in range(keys)}
    barrier = threading.Barrier(submitters)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            with connect(worker_db) as c:
                barrier.wait(30)
                for key in ids:
                    ids[key].append(api.enqueue(c, "record", {"k": key}, dedupe_key=key))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for found in ids.values():
        assert len(found) == submitters
        assert len(set(found)) == 1  # every double submit got the first job's id
    assert count(worker_db) == keys
    first = run_cli(worker_db, "enqueue", "--kind", "record", "--dedupe-key", "cli-1")
    second = run_cli(worker_db, "enqueue", "--kind", "record", "--dedupe-key", "cli-1")
    assert first.stdout == second.stdout
    # the key is per kind
    other = run_cli(worker_db, "enqueue", "--kind", "flaky", "--dedupe-key", "cli-1")
    assert other.stdout != first.stdout
    assert count(worker_db) == keys + 2


def test_cancel_stops_a_queued_job_and_discards_a_running_ones_result(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    with connect(worker_db) as c:
        queued = api.enqueue(c, "record", {})
        assert api.cancel(c, queued) == JobStatus.CANCELLED
        running = api.enqueue(c, "until-cancelled", {})
    workers(WORKER_LEASE_SECONDS="10", WORKER_HEARTBEAT_SECONDS="0.5")
    wait_for(
        lambda: bool(
            scalar(
                worker_db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", running
            )
        ),
        20,
        "the cancellable job to start",
        every=0.05,
    )
    out = run_cli(worker_db, "cancel", str(running))
    assert (out.returncode, out.stdout.strip()) == (0, "running")
    wait_for(
        lambda: (
            scalar(worker_db, "SELECT status FROM learnops_jobs WHERE id = %s", running)
            == "cancelled"
        ),
        20,
        "the running job to end cancelled",
        every=0.05,
    )
    with connect(worker_db) as c:
        info = api.status(c, running)
        assert (info.result, info.cancel_requested, info.finished_at is not None) == (
            None,
            True,
            True,
        )
        # the handler saw ctx.cancelled (it records attempt -1 then)
        assert scalar(
            worker_db,
            "SELECT array_agg(attempt ORDER BY at) FROM worker_test_executions WHERE job_id = %s",
            running,
        ) == [1, -1]
        assert api.status(c, queued).status == JobStatus.CANCELLED
        # never ran
        assert not scalar(
            worker_db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", queued
        )
        assert api.cancel(c, queued) == JobStatus.CANCELLED  # idempotent
        with pytest.raises(JobNotFound):
            api.cancel(c, 10**9)
    out = run_cli(worker_db, "status", str(running))
    assert json.loads(out.stdout)["status"] == "cancelled"
    assert run_cli(worker_db, "status", str(10**9)).returncode == 5


def test_stats_and_a_metric_show_kinds_that_no_live_worker_handles(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    with connect(worker_db) as c:
        api.enqueue(c, "nobody-handles-this", {})
        api.enqueue(c, "nobody-handles-this", {})
    w = workers(http=True)
    wait_for(
        lambda: json.loads(run_cli(worker_db, "stats", "--json").stdout)["workers"] != [],
        20,
        "the worker to register",
        every=0.05,
    )
    stats = json.loads(run_cli(worker_db, "stats", "--json").stdout)
    assert stats["unhandled"] == [{"kind": "nobody-handles-this", "count": 2}]
    [live] = stats["workers"]
    assert "record" in live["kinds"]
    assert "nobody-handles-this" not in live["kinds"]
    assert (
        "UNHANDLED: 2 queued job(s) of kind 'nobody-handles-this'"
        in run_cli(worker_db, "stats").stdout
    )
    _, text = w.get("/metrics")
    assert 'learnops_worker_queued_unhandled{kind="nobody-handles-this"} 2.0' in text
    w.signal(15)
    assert w.wait(20) == 0
    assert json.loads(run_cli(worker_db, "stats", "--json").stdout)["workers"] == []
