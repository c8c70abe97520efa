"""Retry delays: exponential, capped, jittered within +-10 %."""

from __future__ import annotations

import random

import pytest
from learnops_worker.backoff import retry_delay


def test_delays_double_per_attempt_within_the_jitter() -> None:
    rng = random.Random(1)
    for attempt, nominal in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)]:
        d = retry_delay(attempt, base_seconds=2, max_seconds=600, rng=rng)
        assert nominal * 0.9 <= d <= nominal * 1.1


def test_delays_never_exceed_the_cap_even_for_huge_attempts() -> None:
    rng = random.Random(2)
    delays = [retry_delay(a, base_seconds=2, max_seconds=60, rng=rng) for a in (7, 50, 10_000)]
    assert all(54 <= d <= 60 for d in delays)


def test_jitter_spreads_retries_of_the_same_attempt() -> None:
    rng = random.Random(3)
    delays = {round(retry_delay(3, base_seconds=1, max_seconds=100, rng=rng), 6) for _ in range(50)}
    assert len(delays) > 40


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        retry_delay(0, base_seconds=1, max_seconds=1)
