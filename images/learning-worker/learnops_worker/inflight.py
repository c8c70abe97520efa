"""What this process holds a lease on, from the claim until the fenced write that ends it.

A held job is claimed (waiting for a thread), then started, then settled: its outcome is
handed to the acker exactly once, by whoever comes first, the handler's thread or the
timeout watchdog. Shutdown abandons what is not settled and releases it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .metrics import Metrics
from .models import Job


@dataclass(eq=False)
class Held:
    job: Job
    lease_lost: threading.Event = field(default_factory=threading.Event)
    """Set once we know another claim owns the row; the outcome is then discarded."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the job was cancelled or timed out; the handler should stop."""
    started: bool = False
    """The handler was called: from now on the attempt is spent whatever happens."""
    deadline: float | None = None
    """Monotonic time at which the running handler times out (None: never)."""
    settled: bool = False
    """The outcome went to the acker; nothing else may write this claim."""
    timed_out: bool = False
    """The watchdog settled it: the handler overran its timeout (and may still run)."""
    stuck: bool = False
    """Its thread is still inside the handler after the timeout (counted by the worker)."""
    abandoned: bool = False
    """Released on shutdown: whatever the handler returns later is not written."""
    finished: bool = False
    """The handler returned; from now on only the acker's fenced write decides a loss
    (a heartbeat racing with the complete would otherwise see the row gone and cry wolf)."""


@dataclass(frozen=True)
class Success:
    result_json: str | None


@dataclass(frozen=True)
class Retry:
    error_type: str
    error: str
    delay_seconds: float | None = None
    """None: use the backoff schedule; otherwise what the handler asked for (clamped)."""


@dataclass(frozen=True)
class Failure:
    error_type: str
    error: str


Outcome = Success | Retry | Failure


class Inflight:
    def __init__(self, metrics: Metrics) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, Held] = {}
        self._metrics = metrics

    def add(self, held: Held) -> None:
        with self._lock:
            self._jobs[held.job.id] = held
            self._metrics.in_flight.set(len(self._jobs))

    def remove(self, held: Held) -> None:
        with self._lock:
            # Only this claim: after a lost lease the same job id may be held again by a
            # newer claim of this very process, which must stay heartbeated.
            if self._jobs.get(held.job.id) is held:
                del self._jobs[held.job.id]
            self._metrics.in_flight.set(len(self._jobs))

    def start(self, held: Held, timeout_seconds: float) -> bool:
        """Mark the handler as called; False if shutdown took the job first."""
        with self._lock:
            if held.abandoned or held.settled:
                return False
            held.started = True
            if timeout_seconds > 0:
                held.deadline = time.monotonic() + timeout_seconds
            return True

    def settle(self, held: Held) -> bool:
        """True once, for whoever hands the outcome to the acker first."""
        with self._lock:
            if held.settled or held.abandoned:
                return False
            held.settled = True
            return True

    def overdue(self) -> list[Held]:
        """Running jobs past their deadline, settled here as timed out."""
        now = time.monotonic()
        with self._lock:
            late = [
                h
                for h in self._jobs.values()
                if h.started
                and not h.settled
                and not h.abandoned
                and h.deadline is not None
                and now >= h.deadline
            ]
            for h in late:
                h.settled = True
                h.timed_out = True
            return late

    def snapshot(self) -> list[Held]:
        with self._lock:
            return [h for h in self._jobs.values() if not h.abandoned]

    def lose(self, held: Held) -> bool:
        """Mark a lease lost; True only the first time, so each loss is counted once."""
        with self._lock:
            if held.lease_lost.is_set():
                return False
            held.lease_lost.set()
            return True

    def abandon_all(self) -> list[Held]:
        """Shutdown: take every remaining job away from the acker, to be released."""
        with self._lock:
            taken = [h for h in self._jobs.values() if not h.abandoned]
            for h in taken:
                h.abandoned = True
            return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
