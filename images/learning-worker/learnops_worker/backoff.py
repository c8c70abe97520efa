"""Retry delays: capped exponential with jitter, so retries of a burst spread out."""

from __future__ import annotations

import random

JITTER_FRACTION = 0.1
"""Each delay is moved by up to +-10 %, so jobs that failed together do not retry together."""


def retry_delay(
    attempt: int, *, base_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> float:
    """Delay before the next try after failed attempt number `attempt` (1-based).

    base * 2**(attempt-1), capped at max_seconds, then jittered (never above the cap).
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # min() before the power keeps huge attempt counts from overflowing to inf.
    exponent = min(attempt - 1, 62)
    raw = min(max_seconds, base_seconds * (2.0**exponent))
    # Not security relevant: jitter only spreads load.
    jitter = (rng or random).uniform(-JITTER_FRACTION, JITTER_FRACTION)
    return max(0.0, min(max_seconds, raw * (1.0 + jitter)))
