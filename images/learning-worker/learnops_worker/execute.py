"""Runs one handler and turns whatever happens into an Outcome the database will accept.

Everything is checked here, in the handler's thread: the result serialises strictly (no
NaN/Infinity, no NUL, no lone surrogate, bounded size and depth), error texts are made valid
text, and a requested delay is clamped. An outcome that leaves this module can be written.
"""

from __future__ import annotations

import math
import time

from prometheus_client import Histogram

from . import jsoncheck
from .errors import PermanentFailure, RetryLater
from .handlers import Handler, JobContext
from .inflight import Failure, Outcome, Retry, Success
from .models import MAX_RESULT_BYTES
from .settings import Settings

ERROR_TEXT_LIMIT = 500
"""Stored error messages are cut here; history rows stay small."""


def run_handler(handler: Handler, ctx: JobContext, latency: Histogram) -> Outcome:
    started = time.perf_counter()
    try:
        return _outcome(handler, ctx)
    finally:
        latency.labels(ctx.job.kind).observe(time.perf_counter() - started)


def _outcome(handler: Handler, ctx: JobContext) -> Outcome:
    try:
        result = handler(ctx)
    except RetryLater as exc:
        delay = clamp_delay(exc.delay_seconds, ctx.settings)
        return Retry(error_type(exc), error_text(exc), delay)
    except PermanentFailure as exc:
        return Failure(error_type(exc), error_text(exc))
    except BaseException as exc:  # SystemExit too: the job's failure, not the thread's
        return Retry(error_type(exc), error_text(exc))
    if result is None:
        return Success(None)
    try:
        return Success(jsoncheck.dumps(result, max_bytes=MAX_RESULT_BYTES))
    except jsoncheck.Unstorable as exc:
        # The same input gives the same result: retrying cannot help.
        return Failure("UnstorableResult", f"the handler's result cannot be stored: {exc}")


def clamp_delay(delay: object, settings: Settings) -> float | None:
    """A handler's requested delay within [0, WORKER_BACKOFF_MAX_SECONDS]; None if unusable."""
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        return None
    try:
        value = float(delay)
    except OverflowError:  # an int beyond any float
        value = math.inf if delay > 0 else 0.0
    if math.isnan(value):
        return None
    return min(max(0.0, value), settings.backoff_max_seconds)


def error_type(exc: BaseException) -> str:
    return jsoncheck.clean_text(type(exc).__name__, 100)


def error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:
        text = "<exception text could not be read>"
    return jsoncheck.clean_text(text, ERROR_TEXT_LIMIT)
