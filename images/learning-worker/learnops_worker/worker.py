"""The worker: one claim loop, a fixed set of handler threads, and an orderly, bounded stop.

Loop (main thread): wait until the threads and the claim-ahead buffer have room -> claim
that many jobs in one statement -> queue them for the handler threads -> if the queue looked
empty, sleep until a NOTIFY or the poll interval. Side threads: heartbeat (extends leases,
renews the live-worker row, times out overrunning handlers; its death stops the worker),
acker (batched fenced writes), listener (NOTIFY), janitor (retention), HTTP probes.

Claim-ahead: the loop keeps up to CLAIM_AHEAD_SECONDS of work claimed beyond the free
threads (measured from recent handler times, at most CLAIM_AHEAD_MAX jobs), so fast jobs
never wait for a round trip, while slow jobs (seconds each) are claimed only as threads free
up and never sit leased where an idle worker elsewhere could run them.

Stop (SIGTERM, or a fatal error): stop claiming, release jobs not yet started (their attempt
given back), let running handlers finish until the shutdown deadline, write their outcomes,
then release what is still running (keeping its attempt). Every step has a deadline; past
the last one all connections are cut and, as a last resort, the process exits by itself.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time

import psycopg

from . import db, jsoncheck
from .acker import Acker
from .cache import PgResultCache
from .errors import EXIT_SHUTDOWN_OVERRUN, DatabaseUnavailable, WorkerError
from .execute import run_handler
from .handlers import Handler, JobContext
from .heartbeat import Heartbeat
from .inflight import Failure, Held, Inflight, Outcome, Retry
from .janitor import Janitor
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
CLAIM_AHEAD_SECONDS = 0.25
"""Work claimed beyond the free threads, in expected handler time."""
CLAIM_AHEAD_MAX = 64
"""Jobs claimed beyond the free threads, at most."""
AVERAGE_WEIGHT = 0.2
"""Weight of the newest handler time in the running average that sizes claim-ahead."""
ACK_FLUSH_SECONDS = 1.5
"""After the drain, time to write the outcomes still queued."""
SHUTDOWN_MARGIN_SECONDS = 5.0
"""After the drain deadline: flush, release and unregister must be done within this."""
OVERRUN_GRACE_SECONDS = 2.0
"""Past the margin, connections are cut; this much later the process exits by itself."""


class Worker:
    def __init__(self, settings: Settings, handlers: dict[str, Handler], metrics: Metrics) -> None:
        self.settings = settings
        self.handlers = handlers
        self.metrics = metrics
        self.health = db.Health()
        self.inflight = Inflight(metrics)
        self.stopping = threading.Event()
        """Set on SIGTERM or a fatal error: no more claims."""
        self.fatal: WorkerError | None = None
        self._deadline: float | None = None
        self._reaper: threading.Timer | None = None
        self._wake = threading.Event()
        self._work: queue.SimpleQueue[Held | None] = queue.SimpleQueue()
        self._slots = threading.Condition()
        self._buffered = 0
        """Claimed jobs waiting for a thread."""
        self._running = 0
        """Threads inside a handler (stuck ones included)."""
        self._stuck = 0
        """Threads inside a handler that overran its timeout."""
        self._average: float | None = None
        self._pool = db.Pool(settings, settings.concurrency, "handler")
        # A duplicate waits at most as long as the first caller can spend at the provider.
        provider_budget = settings.openai_timeout_seconds * (settings.openai_max_retries + 1)
        self._cache = PgResultCache(
            self._pool, provider_budget + LOCK_WAIT_MARGIN_SECONDS, settings.cache_ttl_seconds
        )
        self.acker = Acker(
            settings, self.inflight, metrics, self.health, self._wake_claimer, self._on_fatal
        )
        self.heartbeat = Heartbeat(
            settings,
            self.inflight,
            metrics,
            self.health,
            sorted(handlers),
            self._watch_timeouts,
            self._on_fatal,
        )
        self.listener = Listener(settings, self._wake)
        self.janitor = Janitor(settings, metrics)
        self._threads = [
            threading.Thread(target=self._execute_loop, name=f"handler-{i}", daemon=True)
            for i in range(settings.concurrency)
        ]
        self.loop_beat = time.monotonic()
        metrics.concurrency.set(settings.concurrency)

    # -- control -------------------------------------------------------------
    def request_stop(self, reason: str, *, immediate: bool = False) -> None:
        """Stop claiming; drain until the shutdown timeout (or at once if `immediate`)."""
        now = time.monotonic()
        if not self.stopping.is_set():
            log.info("stopping", extra={"event": "worker.stopping", "reason": reason})
            self._deadline = now + self.settings.shutdown_timeout_seconds
        if immediate:
            self._deadline = now
        assert self._deadline is not None
        self._arm_reaper(self._deadline + SHUTDOWN_MARGIN_SECONDS)
        self.stopping.set()
        self._wake.set()
        with self._slots:
            self._slots.notify_all()

    def _arm_reaper(self, at: float) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        self._reaper = threading.Timer(max(0.0, at - time.monotonic()), self._overrun)
        self._reaper.daemon = True
        self._reaper.start()

    def _overrun(self) -> None:
        """The stop took longer than its bound: cut every connection, then leave."""
        cut = db.interrupt_all()
        log.error(
            "stop overran its deadline; connections cut",
            extra={"event": "worker.stop_overrun", "count": cut},
        )
        time.sleep(OVERRUN_GRACE_SECONDS)
        log.error("exiting without a clean stop", extra={"event": "worker.forced_exit"})
        logging.shutdown()
        os._exit(EXIT_SHUTDOWN_OVERRUN)

    def _on_fatal(self, exc: Exception) -> None:
        if self.fatal is None:
            self.fatal = (
                exc
                if isinstance(exc, WorkerError)
                else WorkerError(f"a worker thread died ({type(exc).__name__})")
            )
        self.request_stop("fatal", immediate=True)

    def healthy(self) -> tuple[bool, dict[str, object]]:
        """Liveness: can this process still make progress by itself? A database outage is
        not its fault (see ready); a dead loop, a dead side thread or stuck slots are."""
        loop_ok = time.monotonic() - self.loop_beat < max(
            LOOP_STALL_SECONDS, 3 * self.settings.poll_seconds
        )
        hb_ok = self.heartbeat.alive()
        acker_ok = self.acker.alive()
        slots_ok = self._stuck < self.settings.concurrency
        ok = loop_ok and hb_ok and acker_ok and slots_ok and self.fatal is None
        return ok, {
            "loop": loop_ok,
            "heartbeat": hb_ok,
            "acker": acker_ok,
            "stuck_handlers": self._stuck,
            "listener": self.listener.healthy,
            "stopping": self.stopping.is_set(),
        }

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Readiness: the database answered this process's last statements, and not stopping."""
        reachable = self.health.reachable()
        stopping = self.stopping.is_set()
        return reachable and not stopping, {"database": reachable, "stopping": stopping}

    # -- main loop -------------------------------------------------------------
    def run(self) -> None:
        """Block until stopped; raises the fatal error, if any, after the orderly shutdown."""
        self.heartbeat.start()
        self.acker.start()
        self.listener.start()
        self.janitor.start()
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
                want = self._wait_for_room()
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
                    self.health.failed()
                    self.loop_beat = time.monotonic()  # the loop turns; the database is out
                    log.warning(
                        "claim failed",
                        extra={"event": "claim.failed", "error_type": type(exc).__name__},
                    )
                    if conn is not None:
                        conn.close()
                    conn = None
                    self.stopping.wait(CLAIM_ERROR_PAUSE_SECONDS)
                    continue
                self.health.ok()
                self.loop_beat = time.monotonic()
                self._hand_out([Job.from_row(r) for r in rows])
                if len(rows) < want:
                    self._wake.wait(self.settings.poll_seconds)
                    self.loop_beat = time.monotonic()
        finally:
            if conn is not None:
                conn.close()

    def _ahead(self) -> int:
        """Jobs to keep claimed beyond the free threads."""
        if self.settings.global_max_inflight or self._average is None:
            return 0  # under a global cap a claimed job holds a slot others could use
        return min(CLAIM_AHEAD_MAX, int(CLAIM_AHEAD_SECONDS / max(self._average, 1e-6)))

    def _room(self) -> int:
        """Jobs to claim now (caller holds _slots): 0 until the buffer is half empty."""
        threads = self.settings.concurrency - self._stuck
        busy = self._running - self._stuck
        ahead = min(CLAIM_AHEAD_MAX, self._ahead() * threads)
        want = threads + ahead - busy - self._buffered
        limit = threads + ahead + UNACKED_LIMIT - len(self.inflight)
        if want <= 0 or self._buffered > ahead // 2:
            return 0
        return max(0, min(want, limit))

    def _wait_for_room(self) -> int:
        with self._slots:
            while not self.stopping.is_set():
                want = self._room()
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
            self._buffered += len(jobs)
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
                self._buffered -= 1
                # Checked and counted under one lock: the shutdown either waits for this job
                # or sees it unstarted and releases it (its attempt given back), never both.
                if self.stopping.is_set():
                    self._slots.notify_all()
                    continue
                self._running += 1
                if self._room() > 0:
                    self._slots.notify_all()
            try:
                self._execute(held)
            finally:
                with self._slots:
                    self._running -= 1
                    if held.stuck:
                        held.stuck = False
                        self._stuck -= 1
                        self.metrics.stuck_handlers.set(self._stuck)
                    if self.stopping.is_set() or self._room() > 0:
                        self._slots.notify_all()

    def _execute(self, held: Held) -> None:
        job = held.job
        if not self.inflight.start(held, self.settings.timeout_for(job.kind)):
            return
        began = time.perf_counter()
        outcome: Outcome
        try:
            payload = jsoncheck.loads(job.payload_text)
        except jsoncheck.Unstorable as exc:
            outcome = Failure("InvalidPayload", f"the payload {exc}")
        else:
            ctx = JobContext(
                job,
                payload,
                self.settings,
                self._cache,
                held.lease_lost,
                self.stopping,
                held.cancelled,
            )
            outcome = run_handler(self.handlers[job.kind], ctx, self.metrics.latency)
        took = time.perf_counter() - began
        avg = self._average
        self._average = took if avg is None else avg + AVERAGE_WEIGHT * (took - avg)
        held.finished = True
        if self.inflight.settle(held):
            self.acker.put(held, outcome)

    def _watch_timeouts(self) -> None:
        """Heartbeat tick: end the attempt of every handler past its timeout."""
        for held in self.inflight.overdue():
            held.cancelled.set()
            timeout = self.settings.timeout_for(held.job.kind)
            self.metrics.timed_out.labels(held.job.kind).inc()
            log.warning(
                "job timed out; its attempt ends now",
                extra={
                    "event": "job.timed_out",
                    "job_id": held.job.id,
                    "kind": held.job.kind,
                    "attempt": held.job.attempt,
                    "seconds": timeout,
                },
            )
            with self._slots:
                if not held.finished:
                    held.stuck = True
                    self._stuck += 1
                    self.metrics.stuck_handlers.set(self._stuck)
            self.acker.put(held, Retry("JobTimeout", f"the handler ran longer than {timeout:g} s"))

    # -- shutdown ---------------------------------------------------------------
    def _shutdown(self) -> None:
        self.listener.stop()
        self.janitor.stop()
        if self._deadline is None:
            self._deadline = time.monotonic()
        drain_until = self._deadline
        final = drain_until + SHUTDOWN_MARGIN_SECONDS
        self._arm_reaper(final)
        with self._slots:
            while self._running - self._stuck > 0 and time.monotonic() < drain_until:
                self._slots.wait(timeout=max(0.0, min(0.2, drain_until - time.monotonic())))
        for _ in self._threads:
            self._work.put(None)
        self.acker.stop(max(drain_until, time.monotonic()) + ACK_FLUSH_SECONDS)
        leftover = self.inflight.abandon_all()
        if leftover:
            self._release(leftover, final - 1.0)
        self.heartbeat.stop(time.monotonic() + 1.0)
        self.heartbeat.unregister(final)
        db.interrupt_all()  # anything still blocked (a stuck handler's query) lets go
        self._pool.close()
        if self._reaper is not None:
            self._reaper.cancel()
        log.info("worker stopped", extra={"event": "worker.stopped", "count": len(leftover)})

    def _release(self, held: list[Held], deadline: float) -> None:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise DatabaseUnavailable("no time left to release")
            with db.connect(
                self.settings,
                purpose="release",
                statement_timeout_seconds=min(remaining, self.settings.statement_timeout_seconds),
                connect_timeout=int(min(remaining, db.CONNECT_TIMEOUT_SECONDS)),
            ) as conn:
                rows = conn.execute(
                    Q.release,
                    {
                        "ids": [h.job.id for h in held],
                        "tokens": [h.job.lease_token for h in held],
                        "started": [h.started for h in held],
                        "max_attempts": self.settings.max_attempts,
                    },
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
        released = {r[0]: r[1] for r in rows}
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
                        "status": released[h.job.id],
                    },
                )
            self.inflight.remove(h)
