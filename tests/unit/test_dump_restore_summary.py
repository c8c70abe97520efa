"""The restore/drill side of the dump runner without a database: summaries fit the kubelet's
4 KiB, assertions are bounded, and the command line refuses what cannot work."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from learnops_dump import errors
from learnops_dump.cli import main
from learnops_dump.drill import parse_assertions
from learnops_dump.outcome import RunSummary, bounded_message
from learnops_dump.report import TERMINATION_LIMIT


def test_a_summary_with_huge_lists_and_message_still_fits_and_stays_json() -> None:
    summary = RunSummary(datetime.now(UTC), kind="restore", artifact="a.dump")
    summary.fail(errors.VerificationFailed("x" * 10_000))
    summary.extra["mismatches"] = ["public.t: 1 rows, manifest 2" * 5] * 10
    summary.extra["checksPassed"] = ["restored"] * 40
    text = bounded_message(summary.data(datetime.now(UTC)))
    assert len(text.encode()) <= TERMINATION_LIMIT
    data = json.loads(text)
    assert (data["status"], data["exitCode"], data["reason"]) == ("failed", 7, "VerificationError")
    assert data["message"].endswith("...")


def test_assertions_are_bounded_and_need_names_and_sql() -> None:
    assert parse_assertions(None) == ()
    assert parse_assertions([{"name": "n", "sql": "SELECT true"}]) == (("n", "SELECT true"),)
    for bad in ([{"name": "n"}], [{"sql": "x"}], "SELECT", [{"name": "n", "sql": "x" * 5000}]):
        with pytest.raises(errors.ConfigError):
            parse_assertions(bad)
    with pytest.raises(errors.ConfigError):
        parse_assertions([{"name": str(i), "sql": "SELECT true"} for i in range(21)])


def test_a_restore_that_cannot_start_still_writes_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("BACKUP_TERMINATION_LOG", str(log))
    monkeypatch.setenv("BACKUP_STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("PGHOST", "db")
    code = main(["restore", "latest", "--target-db", "x", "--role", "r"])
    assert code == 2
    data = json.loads(log.read_text())
    assert (data["kind"], data["reason"]) == ("restore", "ConfigError")
    code = main(["restore", "latest", "--target-db", "x"])
    assert code == 2
    assert "latest.json names no artifact" in json.loads(log.read_text())["message"]
    monkeypatch.setenv("DRILL_ASSERTIONS", "{not json")
    assert main(["drill"]) == 2
    assert json.loads(log.read_text())["kind"] == "drill"
