"""Retention: deletes finished jobs and old cache rows in small batches, one worker at a time.

Each round takes a session advisory lock with a try (the other workers skip the round), then
deletes the oldest rows past their age in batches of BATCH rows that skip locked rows, with a
pause between batches, until nothing is left or the round's time is up. Running and queued
jobs are never touched, and a batch never waits for a claim.
"""

from __future__ import annotations

import logging
import threading
import time

from . import db
from .metrics import Metrics
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)

BATCH = 500
"""Rows per DELETE: short statements, short row locks."""
PAUSE_SECONDS = 0.05
"""Between batches, so pruning never takes the database away from claims."""
ROUND_SECONDS = 20.0
"""A round stops after this; the next round carries on."""


class Janitor:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="janitor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._settings.retention_interval_seconds):
            try:
                self.round()
            except Exception as exc:  # the next round tries again; claims are unaffected
                log.warning(
                    "retention round failed",
                    extra={"event": "retention.failed", "error_type": type(exc).__name__},
                )

    def _targets(self) -> list[tuple[str, str, dict[str, object]]]:
        s = self._settings
        out: list[tuple[str, str, dict[str, object]]] = []
        for status, age in (
            ("succeeded", s.retention_succeeded_seconds),
            ("cancelled", s.retention_succeeded_seconds),
            ("failed", s.retention_failed_seconds),
        ):
            if age > 0:
                out.append(("jobs", Q.prune_jobs, {"status": status, "age_seconds": age}))
        if s.cache_ttl_seconds > 0:
            out.append(("cache", Q.prune_cache, {"age_seconds": s.cache_ttl_seconds}))
        return out

    def round(self) -> int:
        """One pruning round; returns the rows deleted (0 if another worker holds the lock)."""
        targets = self._targets()
        with db.connect(self._settings, purpose="retention") as conn:
            row = conn.execute(Q.retention_lock).fetchone()
            if not row or not row[0]:
                return 0
            total = 0
            ends = time.monotonic() + ROUND_SECONDS
            try:
                for table, query, params in targets:
                    while not self._stop.is_set() and time.monotonic() < ends:
                        deleted = conn.execute(query, {**params, "batch": BATCH}).rowcount
                        total += deleted
                        self._metrics.pruned.labels(table).inc(deleted)
                        if deleted < BATCH:
                            break
                        self._stop.wait(PAUSE_SECONDS)
                conn.execute(Q.prune_workers)
            finally:
                if not conn.closed:
                    conn.execute(Q.retention_unlock)
        if total:
            log.info("pruned", extra={"event": "retention.pruned", "count": total})
        return total
