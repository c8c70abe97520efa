"""The worker: one claim loop, a fixed set of handler threads, and an orderly shutdown.

Loop (main thread): wait for a free handler slot -> claim up to that many jobs in one
statement -> hand them to handler threads -> if the queue looked empty, sleep until a NOTIFY
or the poll interval. Side threads: heartbeat (extends leases; its death stops the worker),
acker (batched fenced writes), listener (NOTIFY), HTTP probes.

Stop (SIGTERM, or a fatal heartbeat): stop claiming, release jobs not yet started, let
running handlers finish until the shutdown deadline, write their outcomes, then release what
is still running without spending its attempt.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time

import psycopg

from . import db
from .acker import Acker
from .cache import PgResultCache
from .errors import DatabaseUnavailable, WorkerError
from .execute import run_handler
from .handlers import Handler, JobContext
from .heartbeat import Heartbeat
from .inflight import Held, Inflight
from .listener import Listener
from .metrics import Metrics
from .models import Job
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)

CLAIM_ERROR_PAUSE_SECONDS = 1.0
"""Pause after a failed claim (database down) before trying again."""
CLAIM_LOCK_TIMEOUT_MS = 100
"""A claim only ever waits for another claim's global slot; past this it retries instead,
so two claims crossing over each other's slots never sit out the 1 s deadlock detection."""
SLOT_RACE_PAUSE_SECONDS = 0.02
"""Upper bound of the random pause after two workers raced for the same global slot."""
LOOP_STALL_SECONDS = 60.0
"""/healthz fails if the claim loop has not turned for this long."""
UNACKED_LIMIT = 128
"""Finished jobs whose outcome is not written yet, at most. Claiming pauses beyond this, so
a slow database cannot make the backlog (and every heartbeat) grow without bound."""
LOCK_WAIT_MARGIN_SECONDS = 30.0
"""Extra wait for a duplicate input's cache lock beyond the provider's own time budget."""


class Worker:
    def __init__(self, settings: Settings, handlers: dict[str, Handler], metrics: Metrics) -> None:
        self.settings = settings
        self.handlers = handlers
        self.metrics = metrics
        self.inflight = Inflight(metrics)
        self.stopping = threading.Event()
        """Set on SIGTERM or a fatal error: no more claims."""
        self.fatal: WorkerError | None = None
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._work: queue.SimpleQueue[Held | None] = queue.SimpleQueue()
        self._slots = threading.Condition()
        self._free = settings.concurrency
        self._running = 0
        self._pool = db.Pool(settings, settings.concurrency, "handler")
        # A duplicate waits at most as long as the first caller can spend at the provider.
        provider_budget = settings.openai_timeout_seconds * (settings.openai_max_retries + 1)
        self._cache = PgResultCache(self._pool, provider_budget + LOCK_WAIT_MARGIN_SECONDS)
        self.acker = Acker(settings, self.inflight, metrics, self._wake_claimer, self._on_fatal)
        self.heartbeat = Heartbeat(settings, self.inflight, metrics, self._on_fatal)
        self.listener = Listener(settings, self._wake)
        self._threads = [
            threading.Thread(target=self._execute_loop, name=f"handler-{i}", daemon=True)
            for i in range(settings.concurrency)
        ]
        self.loop_beat = time.monotonic()
        metrics.concurrency.set(settings.concurrency)

    # -- control -------------------------------------------------------------
    def request_stop(self, reason: str, *, immediate: bool = False) -> None:
        """Stop claiming; drain until the shutdown timeout (or at once if `immediate`)."""
        if not self.stopping.is_set():
            log.info("stopping", extra={"event": "worker.stopping", "reason": reason})
            self._deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        if immediate:
            self._deadline = time.monotonic()
        self.stopping.set()
        self._wake.set()
        with self._slots:
            self._slots.notify_all()

    def _on_fatal(self, exc: Exception) -> None:
        if self.fatal is None:
            self.fatal = (
                exc
                if isinstance(exc, WorkerError)
                else WorkerError(f"a worker thread died ({type(exc).__name__})")
            )
        self.request_stop("fatal", immediate=True)

    def healthy(self) -> tuple[bool, dict[str, object]]:
        loop_ok = time.monotonic() - self.loop_beat < max(
            LOOP_STALL_SECONDS, 3 * self.settings.poll_seconds
        )
        hb_ok = self.heartbeat.alive()
        ok = loop_ok and hb_ok and self.acker.alive() and self.fatal is None
        return ok, {
            "loop": loop_ok,
            "heartbeat": hb_ok,
            "listener": self.listener.healthy,
            "stopping": self.stopping.is_set(),
        }

    # -- main loop -------------------------------------------------------------
    def run(self) -> None:
        """Block until stopped; raises the fatal error, if any, after the orderly shutdown."""
        self.heartbeat.start()
        self.acker.start()
        self.listener.start()
        for t in self._threads:
            t.start()
        log.info(
            "worker started",
            extra={
                "event": "worker.started",
                "worker_id": self.settings.worker_id,
                "concurrency": self.settings.concurrency,
            },
        )
        try:
            self._claim_loop()
        finally:
            self._shutdown()
        if self.fatal is not None:
            raise self.fatal

    def _claim_loop(self) -> None:
        conn: db.Connection | None = None
        params: dict[str, object] = {
            "kinds": sorted(self.handlers),
            "lease_seconds": self.settings.lease_seconds,
            "worker_id": self.settings.worker_id,
            "max_attempts": self.settings.max_attempts,
            "global_max": self.settings.global_max_inflight,
        }
        try:
            while not self.stopping.is_set():
                want = self._wait_for_free_slots()
                if want == 0:
                    continue
                self._wake.clear()  # before the claim, so a NOTIFY during it is not lost
                try:
                    if conn is None or conn.closed:
                        conn = db.connect(
                            self.settings, purpose="claim", lock_timeout_ms=CLAIM_LOCK_TIMEOUT_MS
                        )
                    rows = conn.execute(Q.claim, {**params, "limit": want}).fetchall()
                except (
                    psycopg.errors.UniqueViolation,
                    psycopg.errors.LockNotAvailable,
                    psycopg.errors.DeadlockDetected,
                ):
                    # Another worker took (or is taking) the same global slot; pick again.
                    time.sleep(random.uniform(0, SLOT_RACE_PAUSE_SECONDS))  # noqa: S311
                    continue
                except (psycopg.Error, DatabaseUnavailable) as exc:
                    log.warning(
                        "claim failed",
                        extra={"event": "claim.failed", "error_type": type(exc).__name__},
                    )
                    if conn is not None:
                        conn.close()
                    conn = None
                    self.stopping.wait(CLAIM_ERROR_PAUSE_SECONDS)
                    continue
                self.loop_beat = time.monotonic()
                self._hand_out([Job.from_row(r) for r in rows])
                if len(rows) < want:
                    self._wake.wait(self.settings.poll_seconds)
                    self.loop_beat = time.monotonic()
        finally:
            if conn is not None:
                conn.close()

    def _wait_for_free_slots(self) -> int:
        """How many jobs to claim now: free handler threads, bounded by the ack backlog."""
        limit = self.settings.concurrency + UNACKED_LIMIT
        with self._slots:
            while not self.stopping.is_set():
                want = min(self._free, limit - len(self.inflight))
                if want > 0:
                    return want
                self._slots.wait(timeout=1.0)
                self.loop_beat = time.monotonic()
            return 0

    def _wake_claimer(self) -> None:
        """Called by the acker after each write: the backlog shrank."""
        with self._slots:
            self._slots.notify_all()

    def _hand_out(self, jobs: list[Job]) -> None:
        with self._slots:
            self._free -= len(jobs)
        for job in jobs:
            held = Held(job)
            self.inflight.add(held)
            self.metrics.claimed.labels(job.kind).inc()
            self._work.put(held)

    # -- handler threads ------------------------------------------------------
    def _execute_loop(self) -> None:
        while True:
            held = self._work.get()
            if held is None:
                return
            with self._slots:
                # Checked and counted under one lock: the shutdown either waits for this job
                # or sees it unstarted and releases it, never both.
                if self.stopping.is_set():
                    self._free += 1
                    self._slots.notify_all()
                    continue
                self._running += 1
            ctx = JobContext(held.job, self.settings, self._cache, held.lease_lost, self.stopping)
            outcome = run_handler(self.handlers[held.job.kind], ctx, self.metrics.latency)
            held.finished = True
            if not held.abandoned:
                self.acker.put(held, outcome)
            self._slot_done()

    def _slot_done(self) -> None:
        with self._slots:
            self._free += 1
            self._running -= 1
            self._slots.notify_all()

    # -- shutdown ---------------------------------------------------------------
    def _shutdown(self) -> None:
        self.listener.stop()
        deadline = self._deadline if self._deadline is not None else time.monotonic()
        with self._slots:
            while self._running > 0 and time.monotonic() < deadline:
                self._slots.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
        for _ in self._threads:
            self._work.put(None)
        self.acker.stop(timeout=self.settings.lease_seconds)
        leftover = self.inflight.abandon_all()
        if leftover:
            self._release(leftover)
        self.heartbeat.stop()
        self._pool.close()
        log.info("worker stopped", extra={"event": "worker.stopped", "count": len(leftover)})

    def _release(self, held: list[Held]) -> None:
        try:
            with db.connect(self.settings, purpose="release") as conn:
                rows = conn.execute(
                    Q.release,
                    {"ids": [h.job.id for h in held], "tokens": [h.job.lease_token for h in held]},
                ).fetchall()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.error(
                "release failed; leases will expire instead",
                extra={
                    "event": "release.failed",
                    "error_type": type(exc).__name__,
                    "count": len(held),
                },
            )
            return
        released = {r[0] for r in rows}
        for h in held:
            if h.job.id in released:
                self.metrics.released.labels(h.job.kind).inc()
                log.info(
                    "job released",
                    extra={
                        "event": "job.released",
                        "job_id": h.job.id,
                        "kind": h.job.kind,
                        "attempt": h.job.attempt,
                    },
                )
            self.inflight.remove(h)
