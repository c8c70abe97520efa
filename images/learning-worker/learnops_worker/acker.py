"""Writes job outcomes in batches, each write fenced by the job's lease token.

Successes of one batch go out in a single statement; a missing id in RETURNING means the
lease was lost (another claim owns the row) and the result is dropped, logged and counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from . import db
from .backoff import retry_delay
from .errors import DatabaseUnavailable
from .inflight import Failure, Held, Inflight, Outcome, Retry, Success
from .metrics import Metrics
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)

MAX_BATCH = 256
"""Outcomes written per round trip; bounded so one statement stays short."""
RECONNECT_PAUSE_SECONDS = 0.5
"""Pause before retrying a batch after a database error."""
ERROR_TEXT_LIMIT = 500
"""Stored error messages are cut here; history rows stay small."""

Item = tuple[Held, Outcome] | None


class Acker:
    def __init__(
        self,
        settings: Settings,
        inflight: Inflight,
        metrics: Metrics,
        on_written: Callable[[], None],
        on_fatal: Callable[[Exception], None],
    ) -> None:
        self._settings = settings
        self._on_written = on_written
        self._on_fatal = on_fatal
        self._inflight = inflight
        self._metrics = metrics
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._conn: db.Connection | None = None
        self.thread = threading.Thread(target=self._loop, name="acker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, held: Held, outcome: Outcome) -> None:
        self.queue.put((held, outcome))

    def stop(self, timeout: float) -> None:
        """Write everything queued so far, then end the thread."""
        self.queue.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        try:
            self._drain()
        except Exception as exc:  # unwritten outcomes would stay leased forever: stop the worker
            log.error("acker crashed", extra={"event": "ack.crashed"}, exc_info=True)
            self._on_fatal(exc)
        finally:
            if self._conn is not None:
                self._conn.close()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _drain(self) -> None:
        done = False
        while not done:
            first = self.queue.get()
            batch: list[tuple[Held, Outcome]] = []
            if first is None:
                done = True
            else:
                batch.append(first)
            while len(batch) < MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                else:
                    batch.append(item)
            if batch:
                self._write(batch)
                self._on_written()

    def _write(self, batch: list[tuple[Held, Outcome]]) -> None:
        # The handler's result is only worth writing while the lease might still be ours.
        deadline = time.monotonic() + self._settings.lease_seconds
        # Lease tokens written already: a retry after an error must not repeat them. Tokens, not
        # ids: one batch may hold a lost claim and a newer claim of the same job.
        done: set[uuid.UUID] = set()
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = db.connect(self._settings, purpose="ack")
                self._write_once(self._conn, batch, done)
                return
            except (psycopg.Error, DatabaseUnavailable) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                log.warning(
                    "writing job outcomes failed; retrying",
                    extra={"event": "ack.db_error", "error_type": type(exc).__name__},
                )
                if time.monotonic() > deadline:
                    for held, _ in batch:
                        if held.job.lease_token not in done:
                            self._lost(held, "outcome not written before the lease ran out")
                        self._inflight.remove(held)
                    return
                time.sleep(RECONNECT_PAUSE_SECONDS)

    def _write_once(
        self, conn: db.Connection, batch: list[tuple[Held, Outcome]], done: set[uuid.UUID]
    ) -> None:
        wins = [
            (h, o)
            for h, o in batch
            if isinstance(o, Success) and not h.abandoned and h.job.lease_token not in done
        ]
        if wins:
            rows = conn.execute(
                Q.complete,
                {
                    "ids": [h.job.id for h, _ in wins],
                    "tokens": [h.job.lease_token for h, _ in wins],
                    "results": [o.result_json for _, o in wins if isinstance(o, Success)],
                },
            ).fetchall()
            written = {r[0] for r in rows}
            for held, _ in wins:
                if held.job.id in written:
                    self._metrics.succeeded.labels(held.job.kind).inc()
                    log.debug("job succeeded", extra=_job_extra(held, "job.succeeded"))
                else:
                    self._lost(held, "complete matched no row")
                done.add(held.job.lease_token)
        for held, outcome in batch:
            if held.abandoned or isinstance(outcome, Success) or held.job.lease_token in done:
                continue
            self._write_error(conn, held, outcome)
            done.add(held.job.lease_token)
        if self._settings.global_max_inflight and done:
            conn.execute(Q.notify)
        for held, _ in batch:
            if not held.abandoned:
                self._inflight.remove(held)

    def _write_error(self, conn: db.Connection, held: Held, outcome: Retry | Failure) -> None:
        job = held.job
        error = f"{outcome.error_type}: {outcome.error}"[:ERROR_TEXT_LIMIT]
        final = isinstance(outcome, Failure) or job.attempt >= self._settings.max_attempts
        entry = {
            "attempt": job.attempt,
            "at": datetime.now(UTC).isoformat(),
            "worker": self._settings.worker_id,
            "error": error,
        }
        params: dict[str, object] = {"id": job.id, "token": job.lease_token, "error": error}
        if final:
            row = conn.execute(Q.fail, {**params, "entry": json.dumps(entry)}).fetchone()
            counter, event, delay = self._metrics.failed, "job.failed", None
        else:
            delay = outcome.delay_seconds if isinstance(outcome, Retry) else None
            if delay is None:
                delay = retry_delay(
                    job.attempt,
                    base_seconds=self._settings.backoff_base_seconds,
                    max_seconds=self._settings.backoff_max_seconds,
                )
            entry["retry_in_seconds"] = round(delay, 3)
            row = conn.execute(
                Q.retry, {**params, "entry": json.dumps(entry), "delay_seconds": delay}
            ).fetchone()
            counter, event = self._metrics.retried, "job.retry_scheduled"
        if row is None:
            self._lost(held, "error write matched no row")
            return
        counter.labels(job.kind).inc()
        extra = _job_extra(held, event)
        extra.update(error_type=outcome.error_type, delay_seconds=delay)
        log.info("job failed" if final else "job will be retried", extra=extra)

    def _lost(self, held: Held, reason: str) -> None:
        if self._inflight.lose(held):
            self._metrics.lease_lost.labels(held.job.kind).inc()
            extra = _job_extra(held, "job.lease_lost")
            extra["reason"] = reason
            log.warning("lease lost; result abandoned", extra=extra)


def _job_extra(held: Held, event: str) -> dict[str, object]:
    return {
        "event": event,
        "job_id": held.job.id,
        "kind": held.job.kind,
        "attempt": held.job.attempt,
    }
