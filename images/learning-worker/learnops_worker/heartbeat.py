"""Extends the leases of every held job, fenced by token, on a fixed interval.

A missing id in the answer means the lease was taken over: the handler is told through
`lease_lost` and its result will be dropped. If no round succeeds for a whole lease, leases
may already have expired, so the worker is told to stop (exit code 4).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from . import db
from .errors import DatabaseUnavailable, HeartbeatLost
from .inflight import Inflight
from .metrics import Metrics
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        inflight: Inflight,
        metrics: Metrics,
        on_fatal: Callable[[Exception], None],
    ) -> None:
        self._settings = settings
        self._inflight = inflight
        self._metrics = metrics
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._conn: db.Connection | None = None
        self.last_ok = time.monotonic()
        """Monotonic time of the last successful round (also bumped when nothing is held)."""
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=self._settings.heartbeat_seconds + db.CONNECT_TIMEOUT_SECONDS)

    def alive(self) -> bool:
        """For /healthz: the thread runs and its last success is within one lease."""
        fresh = time.monotonic() - self.last_ok < self._settings.lease_seconds
        return self.thread.is_alive() and fresh

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._settings.heartbeat_seconds):
                self.beat()
        except Exception as exc:  # a dead heartbeat must stop the worker, never pass silently
            log.error("heartbeat crashed", extra={"event": "heartbeat.crashed"}, exc_info=True)
            self._on_fatal(exc)
        finally:
            if self._conn is not None:
                self._conn.close()

    def beat(self) -> None:
        held = self._inflight.snapshot()
        if not held:
            self.last_ok = time.monotonic()
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self._settings, purpose="heartbeat")
            rows = self._conn.execute(
                Q.heartbeat,
                {
                    "ids": [h.job.id for h in held],
                    "tokens": [h.job.lease_token for h in held],
                    "lease_seconds": self._settings.lease_seconds,
                },
            ).fetchall()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            self._metrics.heartbeat_errors.inc()
            if self._conn is not None:
                self._conn.close()
            self._conn = None
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
        self.last_ok = time.monotonic()
        extended = {r[0] for r in rows}
        for h in held:
            if h.job.id in extended or h.abandoned or h.finished:
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
