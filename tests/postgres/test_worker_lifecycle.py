"""Start-up, configuration errors, probes, SIGTERM drain and release."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.net import free_port
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import WorkerProc, enqueue, run_cli, scalar


def started(db: Conn, job_id: int) -> bool:
    return bool(scalar(db, "SELECT count(*) FROM worker_test_executions WHERE job_id = %s", job_id))


def test_sigterm_lets_a_running_job_finish_then_exits_zero(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 1}])
    w = workers(WORKER_SHUTDOWN_TIMEOUT_SECONDS="10")
    wait_for(lambda: started(worker_db, job), 20, "the job to start", every=0.05)
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert scalar(worker_db, "SELECT status FROM learnops_jobs WHERE id = %s", job) == "succeeded"


def test_sigterm_releases_a_started_job_at_once_keeping_its_attempt(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    [job] = enqueue(worker_db, "record", [{"sleep": 60}])
    w = workers(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    wait_for(lambda: started(worker_db, job), 20, "the job to start", every=0.05)
    sent = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert time.monotonic() - sent < 5
    row = scalar(
        worker_db,
        "SELECT json_build_object('s', status, 'a', attempts, 't', lease_token) "
        "FROM learnops_jobs WHERE id = %s",
        job,
    )
    # Its handler ran, so the attempt stays spent: a handler that hangs until every SIGTERM
    # must still end `failed` after WORKER_MAX_ATTEMPTS (test_worker_outcomes).
    assert row == {"s": "queued", "a": 1, "t": None}
    released = [e for e in w.events() if e.get("event") == "job.released"]
    assert [e["job_id"] for e in released] == [job]
    # the next worker's run is attempt 2
    scalar(worker_db, "UPDATE learnops_jobs SET payload = '{}' WHERE id = %s", job)
    workers()
    wait_for(
        lambda: (
            scalar(worker_db, "SELECT status FROM learnops_jobs WHERE id = %s", job) == "succeeded"
        ),
        20,
        "the released job to run again",
        every=0.05,
    )
    assert scalar(worker_db, "SELECT attempts FROM learnops_jobs WHERE id = %s", job) == 2


def test_sigterm_gives_back_the_attempt_of_claimed_jobs_that_never_started(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    # One thread, busy with a long job; the other jobs are claimed ahead but never start.
    [busy] = enqueue(worker_db, "record", [{"sleep": 0.05}] * 20 + [{"sleep": 60}])[-1:]
    waiting = enqueue(worker_db, "record", [{"sleep": 0}] * 30)
    w = workers(WORKER_SHUTDOWN_TIMEOUT_SECONDS="0.5")
    wait_for(lambda: started(worker_db, busy), 30, "the long job to start", every=0.05)
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    assert scalar(worker_db, "SELECT attempts FROM learnops_jobs WHERE id = %s", busy) == 1
    never_ran = scalar(
        worker_db,
        "SELECT array_agg(DISTINCT attempts) FROM learnops_jobs j WHERE id = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM worker_test_executions e WHERE e.job_id = j.id)",
        waiting,
    )
    assert never_ran == [0]


@pytest.mark.parametrize(("value", "effective"), [("1", 1), ("4", 4), ("5", 4), ("100", 4)])
def test_concurrency_above_the_cap_is_clamped_with_a_warning(
    worker_db: Conn, workers: Callable[..., WorkerProc], value: str, effective: int
) -> None:
    w = workers(http=True, WORKER_CONCURRENCY=value)
    wait_for(lambda: w.get("/healthz")[0] == 200, 10, "healthz", every=0.05)
    assert w.metric("learnops_worker_concurrency") == effective
    warnings = [e for e in w.events() if e.get("event") == "config.warning"]
    if int(value) > 4:
        assert len(warnings) == 1
        assert "cap of 4" in warnings[0]["message"]
        assert f"WORKER_CONCURRENCY={value}" in warnings[0]["message"]
    else:
        assert warnings == []


def test_concurrency_zero_is_a_configuration_error(worker_db: Conn) -> None:
    result = run_cli(worker_db, "run", WORKER_CONCURRENCY="0")
    assert result.returncode == 2
    assert "WORKER_CONCURRENCY must be at least 1" in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("feedback", "has no '='"),
        ("x=nosuch_module_xyz:run", "cannot import module 'nosuch_module_xyz'"),
        ("x=tests.support.worker_handlers:missing", "has no 'missing'"),
        ("x=tests.support.worker_handlers:not_callable", "is not callable"),
        ("x=tests.support.worker_handlers", "target must be module:function"),
        (
            "x=tests.support.worker_handlers:record,x=tests.support.worker_handlers:flaky",
            "kind 'x' twice",
        ),
    ],
)
def test_handler_loading_errors_are_clear(worker_db: Conn, spec: str, message: str) -> None:
    result = run_cli(worker_db, "run", WORKER_HANDLERS=spec)
    assert result.returncode == 2
    [line] = [json.loads(x) for x in result.stderr.splitlines()]
    assert line["event"] == "worker.error"
    assert message in line["message"]


def test_run_without_the_schema_says_to_migrate(pg_db: Conn) -> None:
    result = run_cli(pg_db, "run")
    assert result.returncode == 2
    assert "learning-worker migrate" in result.stderr


def test_an_unreachable_database_exits_3_without_leaking_the_password(pg_db: Conn) -> None:
    wrong = Conn(pg_db.host, free_port(), pg_db.user, pg_db.password, pg_db.dbname)
    result = run_cli(pg_db, "migrate", DATABASE_URL=wrong.url())
    assert result.returncode == 3
    assert pg_db.password not in result.stderr + result.stdout


def test_probes_metrics_and_secret_hygiene(
    worker_db: Conn, workers: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text(worker_db.url() + "\n")
    enqueue(worker_db, "record", [{"sleep": 0}] * 3)
    enqueue(worker_db, "flaky", [{"fail_times": 99}])
    w = workers(
        http=True,
        DATABASE_URL="",
        DATABASE_URL_FILE=str(secret_file),
        WORKER_MAX_ATTEMPTS="1",
        WORKER_LOG_LEVEL="DEBUG",
    )
    wait_for(
        lambda: w.metric("learnops_worker_jobs_succeeded_total") == 3, 20, "3 successes", every=0.05
    )
    wait_for(
        lambda: w.metric("learnops_worker_jobs_failed_total") == 1, 20, "1 failure", every=0.05
    )
    code, body = w.get("/healthz")
    assert code == 200
    assert json.loads(body)["heartbeat"] is True
    assert w.get("/readyz")[0] == 200
    _, text = w.get("/metrics")
    for name in ("claimed", "succeeded", "failed", "retried", "lease_lost", "released"):
        assert f"# TYPE learnops_worker_jobs_{name}_total counter" in text
    assert 'learnops_worker_queue_depth{status="succeeded"} 3.0' in text
    assert 'learnops_worker_queue_depth{status="failed"} 1.0' in text
    assert "learnops_worker_handler_seconds_bucket" in text
    assert "learnops_worker_in_flight 0.0" in text
    assert w.get("/nope")[0] == 404
    logs = w.logs()
    assert worker_db.password not in logs
    assert '"job_id"' in logs
    assert "fail_times" not in logs  # payloads never reach the log
    cmdline = Path(f"/proc/{w.pid}/cmdline").read_bytes().decode()
    environ = Path(f"/proc/{w.pid}/environ").read_bytes().decode()
    assert worker_db.password not in cmdline
    assert worker_db.password not in environ  # only the file path is in the environment


def test_a_worker_survives_all_its_connections_being_cut(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    total = 300
    enqueue(worker_db, "record", [{"sleep": 0.01}] * total)
    w = workers(http=True, WORKER_CONCURRENCY="2")
    for _ in range(3):
        time.sleep(0.4)
        scalar(
            worker_db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'learning-worker:%%'",
        )
    wait_for(
        lambda: scalar(worker_db, "SELECT count(*) FROM worker_test_completions") == total,
        60,
        "every job despite the cuts",
        every=0.05,
    )
    assert w.alive()
    assert any(e.get("event") == "listener.down" for e in w.events())  # the cuts happened
    assert scalar(worker_db, "SELECT count(DISTINCT job_id) FROM worker_test_completions") == total
    assert w.get("/healthz")[0] == 200


def test_a_busy_http_port_is_a_configuration_error(worker_db: Conn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(worker_db, "run", WORKER_HTTP_PORT=str(port))
    assert result.returncode == 2
    assert f"WORKER_HTTP_PORT={port}: cannot listen" in result.stderr
