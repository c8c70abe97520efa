"""In-flight bookkeeping and log lines, without a database."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime

from learnops_worker.inflight import Held, Inflight
from learnops_worker.logs import JsonFormatter
from learnops_worker.metrics import Metrics
from learnops_worker.models import Job


def held(job_id: int) -> Held:
    return Held(Job(job_id, "noop", "{}", 0, 1, uuid.uuid4(), datetime.now(UTC)))


def test_a_newer_claim_of_the_same_job_survives_the_older_ones_removal() -> None:
    inflight = Inflight(Metrics())
    old, new = held(7), held(7)
    inflight.add(old)
    inflight.add(new)  # the old lease expired and this process claimed the job again
    inflight.remove(old)  # the old claim's write found the lease lost
    assert inflight.snapshot() == [new]
    inflight.remove(new)
    assert len(inflight) == 0


def test_a_lost_lease_is_counted_once_and_abandoned_jobs_leave_the_heartbeat() -> None:
    inflight = Inflight(Metrics())
    a, b = held(1), held(2)
    inflight.add(a)
    inflight.add(b)
    assert inflight.lose(a) is True
    assert inflight.lose(a) is False
    assert a.lease_lost.is_set()
    assert inflight.abandon_all() == [a, b]
    assert inflight.snapshot() == []


def test_log_lines_are_json_with_an_event_and_never_exception_text() -> None:
    try:
        raise ValueError("payload secret text")
    except ValueError:
        record = logging.LogRecord(
            "w", logging.ERROR, __file__, 1, "job failed", None, sys.exc_info()
        )
    record.__dict__.update(event="job.failed", job_id=3, kind="feedback", payload="nope")
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "job.failed"
    assert line["job_id"] == 3
    assert line["exc_type"] == "ValueError"
    assert "payload" not in line
    assert "secret" not in json.dumps(line)
