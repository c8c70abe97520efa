"""The termination message keeps its schema (docs/dump.md) whatever goes into it."""

from __future__ import annotations

import json
import math
import random
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from learnops_dump.errors import ERRORS, REASONS, DumpFailed, RunnerError
from learnops_dump.masking import forget_secrets
from learnops_dump.report import (
    CONTRACT_KEYS,
    STRING_LIMITS,
    TERMINATION_LIMIT,
    Report,
    termination_message,
)

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
NASTY = ["\x1b[31m", "\x00", "\u2028", "\u0085", "\u202e", "\ud800", '"\\', "ä", "😀", "\r\n"]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def assert_schema(text: str) -> dict[str, Any]:
    """What the operator's strict parser may rely on (docs/dump.md, "Termination message")."""
    raw = text.encode("utf-8")
    assert len(raw) <= TERMINATION_LIMIT
    data: dict[str, Any] = json.loads(raw, parse_constant=lambda c: pytest.fail(c))
    assert tuple(data) == CONTRACT_KEYS
    assert data["status"] in ("ok", "failed")
    assert data["reason"] in REASONS
    assert re.fullmatch(r"[A-Z][A-Za-z]+", data["reason"])
    assert isinstance(data["exitCode"], int)
    assert 0 <= data["exitCode"] <= 9
    assert (data["status"] == "ok") == (data["exitCode"] == 0) == (data["reason"] == "Ok")
    assert data["sizeBytes"] is None or (
        isinstance(data["sizeBytes"], int) and data["sizeBytes"] >= 0
    )
    assert data["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", data["sha256"])
    assert STAMP.fullmatch(data["startedAt"])
    assert STAMP.fullmatch(data["finishedAt"])
    duration = data["durationSeconds"]
    assert isinstance(duration, int | float)
    assert math.isfinite(duration)
    assert duration >= 0
    for key, limit in STRING_LIMITS.items():
        value = data[key]
        if value is None:
            assert key in ("artifact", "serverVersion", "clientVersion")
            continue
        assert isinstance(value, str)
        assert len(json.dumps(value, ensure_ascii=False).encode()) - 2 <= limit
        assert not any(unicodedata.category(c) in UNSAFE for c in value), (key, value)
    return data


def _report(**strings: str) -> Report:
    report = Report(
        started=datetime.now(UTC),
        database=strings.get("database", "db"),
        host=strings.get("host", "host"),
        format=strings.get("format", "custom"),
        compression=strings.get("compression", "zstd:3"),
        credential_source="PGPASSFILE",
    )
    report.server_version = strings.get("serverVersion", "15.18")
    report.client_version = strings.get("clientVersion", "15.18")
    return report


def test_an_ok_message_keeps_every_value() -> None:
    report = _report()
    report.artifact, report.size, report.sha256 = "t-20261130T030000Z.dump.zst", 5, "a" * 64
    report.finish()
    data = assert_schema(termination_message(report.summary()))
    assert data["artifact"] == "t-20261130T030000Z.dump.zst"
    assert data["sizeBytes"] == 5
    assert data["message"] == ""


@pytest.mark.parametrize("char", ["ä", "😀", '"', "\\", "\x1b", "\u2028"])
def test_every_field_at_once_huge_still_fits_4096_bytes(char: str) -> None:
    huge = char * 20000
    report = _report(
        database=huge, host=huge, serverVersion=huge, clientVersion=huge, compression=huge
    )
    report.fail(DumpFailed(huge))
    report.finish()
    data = assert_schema(termination_message(report.summary()))
    assert data["reason"] == "DumpError"
    assert data["exitCode"] == 4


def test_control_characters_become_spaces_and_the_text_stays_readable() -> None:
    report = _report(serverVersion="15.18\x1b[2J (evil)\u202e")
    report.fail(DumpFailed("pg_dump: error:\n\x1b[31mpermission denied\x00 for table x"))
    report.finish()
    data = assert_schema(termination_message(report.summary()))
    assert data["message"] == "pg_dump: error: [31mpermission denied  for table x"
    assert data["serverVersion"] == "15.18 [2J (evil)"


def test_a_backwards_clock_never_gives_a_negative_or_nan_duration() -> None:
    report = _report()
    report.started = datetime.now(UTC) + timedelta(days=3)  # the wall clock jumped back
    report.finish()
    assert assert_schema(termination_message(report.summary()))["durationSeconds"] >= 0
    summary = report.summary()
    summary["durationSeconds"] = float("nan")
    summary["sizeBytes"] = float("inf")
    summary["reason"] = "NotAReason"
    assert_schema(termination_message(summary))


@pytest.mark.parametrize("error", ERRORS)
def test_each_failure_carries_its_documented_reason(error: type[RunnerError]) -> None:
    report = _report()
    report.fail(error())
    report.finish()
    data = assert_schema(termination_message(report.summary()))
    assert (data["exitCode"], data["reason"]) == (error.exit_code, error.reason)


def test_random_hostile_values_always_keep_the_schema() -> None:
    rng = random.Random(12)
    for _ in range(100):

        def text() -> str:
            return "".join(rng.choice([*NASTY, "a", " ", "%"]) for _ in range(rng.randint(0, 3000)))

        report = _report(database=text(), host=text(), serverVersion=text(), clientVersion=text())
        if rng.random() < 0.7:
            report.fail(rng.choice(ERRORS)(text() or None))
        else:
            report.artifact, report.size, report.sha256 = (
                text() or None,
                rng.randint(0, 9),
                "f" * 64,
            )
        report.finish()
        assert_schema(termination_message(report.summary()))
