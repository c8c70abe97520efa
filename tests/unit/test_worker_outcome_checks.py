"""What PostgreSQL would refuse is caught in Python first: results, error texts, delays,
payloads; and the settings that bound handlers and retention."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from learnops_worker import jsoncheck
from learnops_worker.errors import ConfigError, RetryLater
from learnops_worker.execute import clamp_delay, run_handler
from learnops_worker.handlers import JobContext
from learnops_worker.inflight import Failure, Retry, Success
from learnops_worker.metrics import Metrics
from learnops_worker.models import Job
from learnops_worker.settings import Settings, from_env


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"x": math.inf}, "inf is not a JSON number"),
        ([math.nan], "nan is not a JSON number"),
        ({"x": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"x": "\udc80"}, "lone surrogate"),
        (nested(33), "nested deeper than 32"),
        ({1: "x"}, "object key of type int"),
        ({"x": object()}, "a object is not JSON"),
        ({"x": 10**5000}, "not JSON"),
        ("x" * 2000, "more than the limit of 1000"),
    ],
)
def test_values_jsonb_would_refuse_are_unstorable_with_a_reason(value: Any, why: str) -> None:
    with pytest.raises(jsoncheck.Unstorable, match=why):
        jsoncheck.dumps(value, max_bytes=1000)


def test_storable_values_serialise_and_a_deep_text_does_not_recurse() -> None:
    assert jsoncheck.dumps(nested(32), max_bytes=10_000).count("{") == 32
    assert jsoncheck.dumps({"é": ["✓", 1.5, None, True]}, max_bytes=100) == (
        '{"é": ["✓", 1.5, null, true]}'
    )
    with pytest.raises(jsoncheck.Unstorable, match="RecursionError"):
        jsoncheck.loads("[" * 100_000 + "]" * 100_000)
    with pytest.raises(jsoncheck.Unstorable, match="nested deeper than 32"):
        jsoncheck.loads("[" * 40 + "]" * 40)


def test_error_texts_become_valid_text_of_bounded_length() -> None:
    assert jsoncheck.clean_text("a\x00b\udc80c", 100) == "a\u2400b\\udc80c"
    assert len(jsoncheck.clean_text("x" * 1000, 500)) == 500


def test_requested_delays_are_clamped_to_the_backoff_cap() -> None:
    s = Settings(backoff_max_seconds=600)
    assert clamp_delay(1e300, s) == 600
    assert clamp_delay(math.inf, s) == 600
    assert clamp_delay(10**400, s) == 600
    assert clamp_delay(-5, s) == 0
    assert clamp_delay(30, s) == 30
    assert clamp_delay(math.nan, s) is None
    assert clamp_delay("soon", s) is None
    assert clamp_delay(True, s) is None


def run(handler: Any) -> Any:
    job = Job(1, "k", "{}", 0, 1, uuid.uuid4(), datetime.now(UTC))
    events = threading.Event(), threading.Event(), threading.Event()
    ctx = JobContext(job, {}, Settings(backoff_max_seconds=60), None, *events)  # type: ignore[arg-type]
    return run_handler(handler, ctx, Metrics().latency)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_whatever_a_handler_does_becomes_an_outcome_of_its_own_job() -> None:
    def exits(_: Any) -> Any:
        raise SystemExit(2)

    def interrupts(_: Any) -> Any:
        raise KeyboardInterrupt

    def unprintable(_: Any) -> Any:
        raise Unprintable

    def later(_: Any) -> Any:
        raise RetryLater("busy", delay_seconds=1e9)

    assert run(exits) == Retry("SystemExit", "2")
    assert run(interrupts) == Retry("KeyboardInterrupt", "")
    assert run(unprintable) == Retry("Unprintable", "<exception text could not be read>")
    assert run(later) == Retry("RetryLater", "busy", 60)
    assert run(lambda _: {"score": math.inf}) == Failure(
        "UnstorableResult", "the handler's result cannot be stored: inf is not a JSON number"
    )
    assert run(lambda _: {"ok": 1}) == Success('{"ok": 1}')
    assert run(lambda _: None) == Success(None)


def test_job_timeouts_and_retention_settings_parse_with_units_and_per_kind_overrides() -> None:
    url = {"DATABASE_URL": "postgresql://learnops@localhost/learnops"}
    s = from_env(
        {
            **url,
            "WORKER_JOB_TIMEOUT_SECONDS": "30",
            "WORKER_JOB_TIMEOUTS": "feedback=900, noop=0",
            "WORKER_RETENTION_SUCCEEDED": "12h",
            "WORKER_RETENTION_FAILED": "0",
            "WORKER_CACHE_TTL": "90m",
        }
    )
    assert (s.timeout_for("feedback"), s.timeout_for("noop"), s.timeout_for("other")) == (
        900,
        0,
        30,
    )
    assert (s.retention_succeeded_seconds, s.retention_failed_seconds) == (43200, 0)
    assert s.cache_ttl_seconds == 5400
    d = from_env(url)
    assert (d.job_timeout_seconds, d.statement_timeout_seconds) == (600, 10)
    assert (d.retention_succeeded_seconds, d.retention_failed_seconds) == (7 * 86400, 30 * 86400)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKER_JOB_TIMEOUTS": "Feedback=9"}, "expected kind=seconds"),
        ({"WORKER_JOB_TIMEOUTS": "feedback"}, "expected kind=seconds"),
        ({"WORKER_JOB_TIMEOUTS": "feedback=soon"}, "not a number"),
        ({"WORKER_JOB_TIMEOUTS": "a=1,a=2"}, "each kind once"),
        ({"WORKER_RETENTION_FAILED": "7 days"}, "must be a duration"),
        ({"WORKER_RETENTION_FAILED": "-1d"}, "at least 0"),
        ({"WORKER_JOB_TIMEOUT_SECONDS": "nan"}, "finite"),
        ({"WORKER_STATEMENT_TIMEOUT_SECONDS": "0"}, "at least 0.1"),
    ],
)
def test_bad_timeout_and_retention_values_name_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(env)
