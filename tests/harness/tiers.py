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


def summary(reporter: pytest.TerminalReporter) -> None:
    """Per tier: tests passed, failed, in error and skipped, and the summed time of their
    setup, call and teardown (under xdist the sum over the workers, not the wall time)."""
    rows: dict[str, dict[str, float]] = {}
    for category, reports in reporter.stats.items():
        if category in {"deselected", "warnings"}:  # items and warnings, not test reports
            continue
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if not nodeid.startswith("tests/") or nodeid.count("/") < 2:
                continue
            row = rows.setdefault(nodeid.split("/")[1], dict.fromkeys(COLUMNS, 0.0))
            row["seconds"] += getattr(report, "duration", 0.0)
            if category in COLUMNS and category != "seconds":
                row[category] += 1
    if not rows:
        return
    reporter.write_sep("=", "per tier")
    reporter.write_line(f"{'tier':<10}" + "".join(f"{c:>9}" for c in COLUMNS))
    for tier in sorted(rows, key=lambda t: -rows[t]["seconds"]):
        row = rows[tier]
        cells = [f"{int(row[c]):>9}" for c in COLUMNS[:-1]] + [f"{row['seconds']:>8.0f}s"]
        reporter.write_line(f"{tier:<10}" + "".join(cells))


COLUMNS = ("passed", "failed", "error", "skipped", "seconds")
