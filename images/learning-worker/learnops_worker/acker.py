"""Writes job outcomes in batches, each write fenced by the job's lease token.

Successes of one batch go out in a single statement; a missing id in RETURNING means the
lease was lost (another claim owns the row) and the result is dropped, logged and counted.
A connection error retries the batch; any other error (the data's fault) isolates the rows
one by one: the row that still fails is failed with a clear reason, every other row is
written as it would have been.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import psycopg

from . import db
from .backoff import retry_delay
from .inflight import Failure, Held, Inflight, Outcome, Retry, Success
from .jsoncheck import clean_text
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
UNWRITABLE = "the outcome could not be written"

Item = tuple[Held, Outcome] | None


class Acker:
    def __init__(
        self,
        settings: Settings,
        inflight: Inflight,
        metrics: Metrics,
        health: db.Health,
        on_written: Callable[[], None],
        on_fatal: Callable[[Exception], None],
    ) -> None:
        self._settings = settings
        self._on_written = on_written
        self._on_fatal = on_fatal
        self._inflight = inflight
        self._metrics = metrics
        self._health = health
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._conn: db.Connection | None = None
        self._give_up_at: float | None = None
        self.thread = threading.Thread(target=self._loop, name="acker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, held: Held, outcome: Outcome) -> None:
        self.queue.put((held, outcome))

    def stop(self, deadline: float) -> None:
        """Write everything queued so far, giving up on what is unwritten at `deadline`."""
        self._give_up_at = deadline
        self.queue.put(None)
        self.thread.join(max(0.0, deadline - time.monotonic()))

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
                self._health.ok()
                return
            except Exception as exc:
                if not db.transient(exc):
                    raise  # a bug here; per-row errors are handled in _write_once
                self._health.failed()
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                log.warning(
                    "writing job outcomes failed; retrying",
                    extra={"event": "ack.db_error", "error_type": type(exc).__name__},
                )
                now = time.monotonic()
                if now > deadline or (self._give_up_at is not None and now > self._give_up_at):
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
            try:
                self._complete(conn, wins, done)
            except Exception as exc:
                if db.transient(exc):
                    raise
                # One row is poison: write each on its own so only that one fails.
                log.warning(
                    "a batch of results was refused; writing them one by one",
                    extra={"event": "ack.isolating", "error_type": type(exc).__name__},
                )
                for win in wins:
                    if win[0].job.lease_token in done:
                        continue
                    try:
                        self._complete(conn, [win], done)
                    except Exception as row_exc:
                        if db.transient(row_exc):
                            raise
                        self._write_error(conn, win[0], _refused(row_exc), done)
        for held, outcome in batch:
            if held.abandoned or isinstance(outcome, Success) or held.job.lease_token in done:
                continue
            self._write_error(conn, held, outcome, done)
        if self._settings.global_max_inflight and done:
            conn.execute(Q.notify)
        for held, _ in batch:
            if not held.abandoned:
                self._inflight.remove(held)

    def _complete(
        self, conn: db.Connection, wins: Sequence[tuple[Held, Outcome]], done: set[uuid.UUID]
    ) -> None:
        rows = conn.execute(
            Q.complete,
            {
                "ids": [h.job.id for h, _ in wins],
                "tokens": [h.job.lease_token for h, _ in wins],
                "results": [o.result_json for _, o in wins if isinstance(o, Success)],
            },
        ).fetchall()
        written = {r[0]: r[1] for r in rows}
        for held, _ in wins:
            status = written.get(held.job.id)
            if status == "succeeded":
                self._metrics.succeeded.labels(held.job.kind).inc()
                log.debug("job succeeded", extra=_job_extra(held, "job.succeeded"))
            elif status == "cancelled":
                self._cancelled(held)
            else:
                self._lost(held, "complete matched no row")
            done.add(held.job.lease_token)

    def _write_error(
        self, conn: db.Connection, held: Held, outcome: Retry | Failure, done: set[uuid.UUID]
    ) -> None:
        try:
            self._write_error_once(conn, held, outcome)
        except Exception as exc:
            if db.transient(exc):
                raise
            if outcome.error_type == "UnwritableOutcome":
                # Even a plain failure was refused: leave the row to lease expiry (its
                # attempt counts), but never hold up the other rows.
                log.error(
                    "job outcome cannot be written; its lease will expire",
                    extra={**_job_extra(held, "ack.unwritable"), "error_type": type(exc).__name__},
                )
                self._inflight.remove(held)
            else:
                self._write_error(conn, held, _refused(exc), done)
                return
        done.add(held.job.lease_token)

    def _write_error_once(self, conn: db.Connection, held: Held, outcome: Retry | Failure) -> None:
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
        if row[1] == "cancelled":
            self._cancelled(held)
            return
        counter.labels(job.kind).inc()
        extra = _job_extra(held, event)
        extra.update(error_type=outcome.error_type, delay_seconds=delay)
        log.info("job failed" if final else "job will be retried", extra=extra)

    def _cancelled(self, held: Held) -> None:
        self._metrics.cancelled.labels(held.job.kind).inc()
        log.info("job cancelled; outcome discarded", extra=_job_extra(held, "job.cancelled"))

    def _lost(self, held: Held, reason: str) -> None:
        if self._inflight.lose(held):
            self._metrics.lease_lost.labels(held.job.kind).inc()
            extra = _job_extra(held, "job.lease_lost")
            extra["reason"] = reason
            log.warning("lease lost; result abandoned", extra=extra)


def _refused(exc: BaseException) -> Failure:
    """The permanent failure of a job whose outcome the database refused."""
    reason = type(exc).__name__
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        reason = f"{reason}: {exc.diag.message_primary}"
    return Failure("UnwritableOutcome", f"{UNWRITABLE} ({clean_text(reason, 300)})")


def _job_extra(held: Held, event: str) -> dict[str, object]:
    return {
        "event": event,
        "job_id": held.job.id,
        "kind": held.job.kind,
        "attempt": held.job.attempt,
    }
