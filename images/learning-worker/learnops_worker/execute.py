"""Runs one handler and turns whatever happens into an Outcome for the acker."""

from __future__ import annotations

import json
import time

from prometheus_client import Histogram

from .errors import PermanentFailure, RetryLater
from .handlers import Handler, JobContext
from .inflight import Failure, Outcome, Retry, Success


def run_handler(handler: Handler, ctx: JobContext, latency: Histogram) -> Outcome:
    started = time.perf_counter()
    try:
        result = handler(ctx)
        # Serialised here, in the handler thread: a result that is not JSON is the
        # handler's bug and is retried like any other exception.
        return Success(None if result is None else json.dumps(result))
    except RetryLater as exc:
        return Retry(type(exc).__name__, str(exc), exc.delay_seconds)
    except PermanentFailure as exc:
        return Failure(type(exc).__name__, str(exc))
    except Exception as exc:  # any bug in a handler: retry with backoff, never hang the job
        return Retry(type(exc).__name__, str(exc))
    finally:
        latency.labels(ctx.job.kind).observe(time.perf_counter() - started)
