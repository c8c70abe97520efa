"""Extends the leases of every held job, fenced by token, on a fixed interval.

A missing id in the answer means the lease was taken over: the handler is told through
`lease_lost` and its result will be dropped; a cancelled job's handler is told through
`cancelled`. If no round succeeds for a whole lease, leases may already have expired, so the
worker is told to stop (exit code 4). Each round also renews this worker's row in the table
of live workers, and between rounds the thread watches for handlers past their timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import db
from .errors import HeartbeatLost
from .inflight import Inflight
from .metrics import Metrics
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
"""How often job timeouts are checked (in memory) between heartbeat rounds."""
STALL_SECONDS = 60.0
"""/healthz fails if this thread's loop has not turned for this long (or 3 rounds)."""


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        inflight: Inflight,
        metrics: Metrics,
        health: db.Health,
        kinds: list[str],
        on_tick: Callable[[], None],
        on_fatal: Callable[[Exception], None],
    ) -> None:
        self._settings = settings
        self._inflight = inflight
        self._metrics = metrics
        self._health = health
        self._kinds = kinds
        self._on_tick = on_tick
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._conn: db.Connection | None = None
        self.last_ok = time.monotonic()
        """Monotonic time of the last successful round (also bumped when nothing is held)."""
        self.loop_at = time.monotonic()
        """Monotonic time the loop last turned: a stuck thread shows here."""
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, deadline: float) -> None:
        self._stop.set()
        self.thread.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        """For /healthz: the thread runs and its loop turns (the database may be down)."""
        stall = max(STALL_SECONDS, 3 * self._settings.heartbeat_seconds)
        return self.thread.is_alive() and time.monotonic() - self.loop_at < stall

    def _run(self) -> None:
        next_beat = time.monotonic() + self._settings.heartbeat_seconds
        try:
            self._register()
            while not self._stop.wait(min(TICK_SECONDS, self._settings.heartbeat_seconds)):
                self.loop_at = time.monotonic()
                self._on_tick()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self._settings.heartbeat_seconds
                    self.beat()
                    self.loop_at = time.monotonic()
        except Exception as exc:  # a dead heartbeat must stop the worker, never pass silently
            log.error("heartbeat crashed", extra={"event": "heartbeat.crashed"}, exc_info=True)
            self._on_fatal(exc)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connection(self) -> db.Connection:
        if self._conn is None or self._conn.closed:
            # A round must end well inside the lease, answer or not.
            self._conn = db.connect(
                self._settings,
                purpose="heartbeat",
                statement_timeout_seconds=min(
                    self._settings.statement_timeout_seconds, self._settings.heartbeat_seconds
                ),
            )
        return self._conn

    def _register(self) -> None:
        try:
            self._connection().execute(
                Q.worker_register,
                {
                    "worker_id": self._settings.worker_id,
                    "kinds": self._kinds,
                    "concurrency": self._settings.concurrency,
                    "ttl_seconds": max(
                        self._settings.lease_seconds, 3 * self._settings.heartbeat_seconds
                    ),
                },
            )
        except Exception as exc:
            if not db.transient(exc):
                raise
            self._drop_connection()
            log.info(
                "live-worker row not renewed",
                extra={"event": "heartbeat.register_failed", "error_type": type(exc).__name__},
            )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def beat(self) -> None:
        self._register()
        held = self._inflight.snapshot()
        if not held:
            self.last_ok = time.monotonic()
            return
        try:
            rows = (
                self._connection()
                .execute(
                    Q.heartbeat,
                    {
                        "ids": [h.job.id for h in held],
                        "tokens": [h.job.lease_token for h in held],
                        "lease_seconds": self._settings.lease_seconds,
                    },
                )
                .fetchall()
            )
        except Exception as exc:
            if not db.transient(exc):
                raise
            self._health.failed()
            self._metrics.heartbeat_errors.inc()
            self._drop_connection()
            silent = time.monotonic() - self.last_ok
            log.warning(
                "heartbeat failed",
                extra={
                    "event": "heartbeat.failed",
                    "error_type": type(exc).__name__,
                    "seconds": silent,
                },
            )
            # Give up before the next round could come too late, not after leases expired.
            if silent + self._settings.heartbeat_seconds >= self._settings.lease_seconds:
                self._on_fatal(HeartbeatLost())
                self._stop.set()
            return
        self._health.ok()
        self.last_ok = time.monotonic()
        extended = {r[0]: bool(r[1]) for r in rows}
        for h in held:
            if h.job.id in extended:
                if extended[h.job.id] and not h.cancelled.is_set():
                    h.cancelled.set()
                    log.info(
                        "job cancelled while running",
                        extra={"event": "job.cancel_seen", "job_id": h.job.id, "kind": h.job.kind},
                    )
                continue
            if h.abandoned or h.finished or h.settled:
                continue
            if self._inflight.lose(h):
                self._metrics.lease_lost.labels(h.job.kind).inc()
                log.warning(
                    "lease lost while running; result will be abandoned",
                    extra={
                        "event": "job.lease_lost",
                        "job_id": h.job.id,
                        "kind": h.job.kind,
                        "attempt": h.job.attempt,
                        "reason": "heartbeat matched no row",
                    },
                )

    def unregister(self, deadline: float) -> None:
        """Remove this worker's live row (best effort, bounded by `deadline`)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0.5:
            return
        try:
            with db.connect(
                self._settings,
                purpose="unregister",
                statement_timeout_seconds=min(remaining, 2.0),
                connect_timeout=int(min(remaining, 3)),
            ) as conn:
                conn.execute(Q.worker_unregister, {"worker_id": self._settings.worker_id})
        except Exception as exc:  # the row expires on its own
            log.info(
                "live-worker row not removed",
                extra={"event": "heartbeat.unregister_failed", "error_type": type(exc).__name__},
            )
