"""Prometheus metrics of one worker process (own registry, so tests can run several)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .models import JobStatus

log = logging.getLogger(__name__)

# Every status gets a sample, also when zero, so alerts on e.g. queued > N never see "absent".
STATUSES = tuple(s.value for s in JobStatus)


class QueueDepth(Collector):
    """Reads the depth by status at scrape time; a down database yields no sample, not an error."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "learnops_worker_queue_depth", "Jobs in the queue table by status", labels=["status"]
        )
        try:
            counts = self._read()
        except Exception:
            log.warning("queue depth unavailable", extra={"event": "metrics.depth_failed"})
            return [family]
        for status in STATUSES:
            family.add_metric([status], counts.get(status, 0))
        return [family]


class UnhandledKinds(Collector):
    """Queued jobs of kinds that no live worker handles (they would wait forever)."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "learnops_worker_queued_unhandled",
            "Queued jobs of a kind no live worker handles",
            labels=["kind"],
        )
        try:
            counts = self._read()
        except Exception:
            log.warning("unhandled kinds unavailable", extra={"event": "metrics.unhandled_failed"})
            return [family]
        for kind, n in sorted(counts.items()):
            family.add_metric([kind], n)
        return [family]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.claimed = Counter("learnops_worker_jobs_claimed", "Jobs claimed", ["kind"], registry=r)
        self.succeeded = Counter(
            "learnops_worker_jobs_succeeded", "Jobs completed successfully", ["kind"], registry=r
        )
        self.failed = Counter(
            "learnops_worker_jobs_failed", "Jobs that became failed", ["kind"], registry=r
        )
        self.retried = Counter(
            "learnops_worker_jobs_retried",
            "Jobs sent back to queued with backoff",
            ["kind"],
            registry=r,
        )
        self.lease_lost = Counter(
            "learnops_worker_jobs_lease_lost",
            "Jobs whose lease was taken over; their result was abandoned",
            ["kind"],
            registry=r,
        )
        self.released = Counter(
            "learnops_worker_jobs_released",
            "Jobs handed back on shutdown without spending an attempt",
            ["kind"],
            registry=r,
        )
        self.timed_out = Counter(
            "learnops_worker_jobs_timed_out",
            "Attempts ended because the handler ran past its timeout",
            ["kind"],
            registry=r,
        )
        self.cancelled = Counter(
            "learnops_worker_jobs_cancelled",
            "Running jobs whose outcome was discarded because they were cancelled",
            ["kind"],
            registry=r,
        )
        self.stuck_handlers = Gauge(
            "learnops_worker_stuck_handlers",
            "Handler threads still inside a handler that overran its timeout",
            registry=r,
        )
        self.pruned = Counter(
            "learnops_worker_pruned_rows",
            "Rows deleted by retention",
            ["table"],
            registry=r,
        )
        self.heartbeat_errors = Counter(
            "learnops_worker_heartbeat_errors", "Heartbeat rounds that failed", registry=r
        )
        self.in_flight = Gauge("learnops_worker_in_flight", "Jobs held by this worker", registry=r)
        self.concurrency = Gauge(
            "learnops_worker_concurrency", "Effective WORKER_CONCURRENCY after the cap", registry=r
        )
        self.latency = Histogram(
            "learnops_worker_handler_seconds",
            "Handler run time",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )

    def watch_depth(self, read: Callable[[], dict[str, int]]) -> None:
        self.registry.register(QueueDepth(read))

    def watch_unhandled(self, read: Callable[[], dict[str, int]]) -> None:
        self.registry.register(UnhandledKinds(read))
