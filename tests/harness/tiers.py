"""Tier gating: under CI a missing prerequisite fails, elsewhere it skips with its reason."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """CI sets CI=true; there nothing may be skipped silently."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(tier: str, reason: str) -> NoReturn:
    """Fail under CI, skip (printing why) elsewhere."""
    message = f"{tier} tier unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def need_binary(tier: str, name: str) -> str:
    """Return the path of a required binary or stop the tier."""
    path = shutil.which(name)
    if path is None:
        unavailable(tier, f"{name!r} not found on PATH (run `make deps`)")
    return path
