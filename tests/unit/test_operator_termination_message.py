"""The termination message is untrusted input: a strict schema, the kubelet's times, nothing else.

Each message here is what a hostile or broken image could write; none may reach status as it is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from learnops_operator import results, status

from tests.support.contract import runner_summary

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _terminated(message: str, exit_code: int = 0) -> dict[str, Any]:
    return {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": "2026-11-30T02:00:00Z",
        "finishedAt": "2026-11-30T02:00:09Z",
    }


def _result(summary: dict[str, Any] | str, exit_code: int = 0) -> results.RunResult:
    text = summary if isinstance(summary, str) else json.dumps(summary, ensure_ascii=False)
    return results.from_termination(
        "nightly-1", _terminated(text, exit_code), NOW, prefix="nightly", now=NOW
    )


def _ok(**fields: Any) -> dict[str, Any]:
    summary = runner_summary("nightly", started=datetime(2026, 11, 30, 2, tzinfo=UTC))
    summary.update(fields)
    return summary


def test_the_runners_own_summary_is_accepted() -> None:
    result = _result(_ok())
    assert result.succeeded
    assert result.rejected is None


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"reason": "Ok\x1b[2J\x1b[31mHACKED"}, "control characters"),
        ({"artifact": "nightly-20261130T020000Z\x1b]0;x\x07.dump"}, "control characters"),
        ({"reason": "TotallyFine"}, "documented reasons"),
        ({"reason": "x" * 5000}, "longer than"),
        ({"artifact": "other-20261130T020000Z.dump"}, "named nightly-"),
        ({"artifact": "nightly-2-20261130T020000Z.dump"}, "named nightly-"),
        ({"artifact": "nightly-20261130T020000Z/../../etc/passwd"}, "named nightly-"),
        ({"sha256": "not-a-digest"}, "sha256"),
        ({"sizeBytes": -1}, "sizeBytes"),
        ({"sizeBytes": 10**30}, "sizeBytes"),
        ({"sizeBytes": "5"}, "sizeBytes"),
        ({"durationSeconds": -3}, "durationSeconds"),
        ({"durationSeconds": 1e300}, "durationSeconds"),
        ({"exitCode": 3}, "differs"),
        ({"status": "ok", "exitCode": 0, "reason": "DumpError"}, "do not agree"),
        ({"status": "maybe"}, "status"),
        ({"artifact": None}, "must name"),
        ({"message": "a\u202eb"}, "control characters"),
        ({"database": "x" * 600}, "longer than"),
    ],
)
def test_a_summary_that_breaks_the_schema_is_refused_and_never_a_success(
    fields: dict[str, Any], why: str
) -> None:
    result = _result(_ok(**fields))
    assert not result.succeeded
    assert result.reason == "InvalidSummary"
    assert result.rejected is not None
    assert why in result.rejected
    # the refusal names the field, never echoes the hostile value
    assert "\x1b" not in result.message
    assert "HACKED" not in result.message
    assert result.artifact is None


def test_nan_and_infinity_are_refused() -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(_ok()).replace('"durationSeconds": 2.5', f'"durationSeconds": {constant}')
        assert constant in text
        result = _result(text)
        assert result.reason == "InvalidSummary"
        assert result.rejected is not None
        assert "not a number" in result.rejected or "finite" in result.rejected


def test_a_huge_message_is_refused_before_it_is_parsed() -> None:
    huge = json.dumps(_ok(message="x" * 100_000))
    result = _result(huge)
    assert result.rejected is not None
    assert "4096 bytes" in result.rejected
    assert len(result.message) <= results.MAX_MESSAGE_CHARS


def test_a_hostile_failure_keeps_its_exit_code_as_the_verdict() -> None:
    summary = runner_summary("nightly", started=datetime(2026, 11, 30, 2, tzinfo=UTC))
    summary.update(status="failed", exitCode=4, reason="DumpError\x1b[0m", artifact=None)
    result = _result(summary, exit_code=4)
    assert (result.succeeded, result.reason, result.exit_code) == (False, "DumpError", 4)
    assert "refused" in result.message


def test_times_come_from_the_kubelet_not_from_the_message() -> None:
    result = _result(_ok(finishedAt="2099-01-01T00:00:00Z", startedAt="1970-01-01T00:00:00Z"))
    assert result.succeeded
    assert result.finished_at == datetime(2026, 11, 30, 2, 0, 9, tzinfo=UTC)


def test_a_duration_longer_than_the_container_ran_is_replaced_by_the_kubelets() -> None:
    assert _result(_ok(durationSeconds=86400.0)).duration_seconds == 9.0
    assert _result(_ok(durationSeconds=9.4)).duration_seconds == 9.4


def test_a_kubelet_time_in_the_future_is_capped_at_now() -> None:
    terminated = _terminated(json.dumps(_ok()))
    terminated["finishedAt"] = "2099-01-01T00:00:00Z"
    result = results.from_termination("nightly-1", terminated, NOW, prefix="nightly", now=NOW)
    assert result.finished_at == NOW


def test_a_watermark_in_the_future_does_not_hide_later_results() -> None:
    frozen = {"lastReportedJob": "old", "lastReportedTime": "2099-01-01T00:00:00Z"}
    result = _result(_ok())
    assert status.should_record(frozen, result, NOW)
    recent = {"lastReportedJob": "old", "lastReportedTime": "2026-11-30T02:30:00Z"}
    assert not status.should_record(recent, result, NOW)


def test_only_the_jobs_own_pods_are_read() -> None:
    job = {
        "metadata": {
            "name": "nightly-now-1",
            "uid": "job-uid",
            "labels": {"app.kubernetes.io/instance": "nightly"},
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }

    def pod(owner_uid: str, message: str) -> dict[str, Any]:
        return {
            "metadata": {"ownerReferences": [{"controller": True, "uid": owner_uid}]},
            "status": {
                "containerStatuses": [
                    {"name": "dump", "state": {"terminated": _terminated(message)}}
                ]
            },
        }

    planted = pod("someone-else", json.dumps(_ok(sizeBytes=1)))
    result = results.from_job(job, [planted], "dump", NOW)
    assert result is not None
    assert result.reason == "NoSummary"  # the planted pod is not read
    real = pod("job-uid", json.dumps(_ok()))
    result = results.from_job(job, [planted, real], "dump", NOW)
    assert result is not None
    assert result.succeeded
    assert result.size_bytes != 1
