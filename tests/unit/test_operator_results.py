"""Reading a run's result from the dump runner's termination message, whatever state it is in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from learnops_operator import results

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def _summary(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "ok",
        "exitCode": 0,
        "reason": "Ok",
        "message": "",
        "artifact": "nightly-20261130T020000Z.dump",
        "sizeBytes": 123456789,
        "sha256": "e3b0c442" * 8,
        "startedAt": "2026-11-30T02:00:00Z",
        "finishedAt": "2026-11-30T02:00:09Z",
        "durationSeconds": 9.25,
        "database": "app",
        "host": "db",
        "serverVersion": "15.8",
        "clientVersion": "15.8",
        "format": "custom",
        "compression": "zstd:3",
        "runnerVersion": "0.1.0",
    }
    data.update(overrides)
    return data


def _terminated(message: str, exit_code: int = 0, reason: str = "Completed") -> dict[str, Any]:
    return {
        "exitCode": exit_code,
        "reason": reason,
        "message": message,
        "finishedAt": "2026-11-30T02:00:10Z",
    }


def test_successful_summary_becomes_a_success_with_artifact_size_and_checksum() -> None:
    result = results.from_termination(
        "job-1", _terminated(json.dumps(_summary())), NOW, prefix="nightly", now=NOW
    )
    assert result.succeeded
    assert result.reason == "Ok"
    assert result.artifact == "nightly-20261130T020000Z.dump"
    assert result.size_bytes == 123456789
    assert result.sha256 == "e3b0c442" * 8
    assert result.duration_seconds == 9.25
    # the kubelet's time, not the message's finishedAt (02:00:09)
    assert result.finished_at == datetime(2026, 11, 30, 2, 0, 10, tzinfo=UTC)


def test_failed_summary_keeps_reason_exit_code_and_message() -> None:
    summary = _summary(
        status="failed",
        exitCode=3,
        reason="ConnectionError",
        message="could not connect to server db:5432",
        artifact=None,
        sizeBytes=None,
        sha256=None,
    )
    result = results.from_termination(
        "job-2", _terminated(json.dumps(summary), 3, "Error"), NOW, prefix="nightly", now=NOW
    )
    assert not result.succeeded
    assert (result.reason, result.exit_code) == ("ConnectionError", 3)
    assert result.message == "could not connect to server db:5432"
    assert result.artifact is None
    assert result.size_bytes is None


def test_a_nonzero_exit_is_never_a_success_even_if_the_summary_says_ok() -> None:
    result = results.from_termination(
        "job", _terminated(json.dumps(_summary()), 137), NOW, prefix="nightly", now=NOW
    )
    assert not result.succeeded


def test_passwords_that_slip_into_the_message_are_masked_again() -> None:
    summary = _summary(
        status="failed",
        exitCode=4,
        reason="DumpError",
        message="pg_dump: postgresql://backup:hunter2@db/app failed; password=hunter2",
    )
    result = results.from_termination(
        "job", _terminated(json.dumps(summary), 4), NOW, prefix="nightly", now=NOW
    )
    assert "hunter2" not in result.message
    assert "postgresql://***@db/app" in result.message


def test_oversized_messages_are_bounded_before_they_reach_status() -> None:
    summary = _summary(status="failed", exitCode=4, reason="DumpError", message="x" * 5000)
    result = results.from_termination(
        "job", _terminated(json.dumps(summary), 4), NOW, prefix="nightly", now=NOW
    )
    assert len(result.message) <= results.MAX_MESSAGE_CHARS


def test_a_truncated_summary_falls_back_to_the_exit_code() -> None:
    cut = json.dumps(_summary(status="failed", exitCode=6, reason="StorageError"))[:60]
    result = results.from_termination(
        "job", _terminated(cut, 6, "Error"), NOW, prefix="nightly", now=NOW
    )
    assert not result.succeeded
    assert result.reason == "StorageError"
    assert "exit code 6" in result.message


def test_an_oom_killed_container_without_summary_says_so() -> None:
    result = results.from_termination(
        "job", _terminated("", 137, "OOMKilled"), NOW, prefix="nightly", now=NOW
    )
    assert (result.succeeded, result.reason) == (False, "OOMKilled")


def test_exit_zero_without_a_summary_is_not_trusted_as_a_backup() -> None:
    result = results.from_termination("job", _terminated(""), NOW, prefix="nightly", now=NOW)
    assert not result.succeeded
    assert result.reason == "NoSummary"


def _job(cond_type: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "nightly-123", "labels": {"app.kubernetes.io/instance": "nightly"}},
        "status": {
            "conditions": [
                {
                    "type": cond_type,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": "2026-11-30T02:05:00Z",
                }
            ]
        },
    }


def _pod(exit_code: int, message: str, finished: str) -> dict[str, Any]:
    term = {"exitCode": exit_code, "message": message, "finishedAt": finished}
    return {"status": {"containerStatuses": [{"name": "dump", "state": {"terminated": term}}]}}


def test_a_running_job_has_no_result_yet() -> None:
    job = {"metadata": {"name": "j"}, "status": {"active": 1}}
    assert results.from_job(job, [], "dump", NOW) is None


def test_a_job_killed_at_its_deadline_without_pods_is_a_timeout() -> None:
    job = _job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    result = results.from_job(job, [], "dump", NOW)
    assert result is not None
    assert (result.succeeded, result.reason) == (False, "Timeout")


def test_a_job_that_completed_after_a_retry_reports_the_successful_attempt() -> None:
    failed = _pod(
        3,
        json.dumps(_summary(status="failed", exitCode=3, reason="ConnectionError")),
        "2026-11-30T02:01:00Z",
    )
    ok = _pod(0, json.dumps(_summary()), "2026-11-30T02:00:30Z")
    result = results.from_job(_job("Complete"), [failed, ok], "dump", NOW)
    assert result is not None
    assert result.succeeded


def test_a_failed_job_reports_its_newest_attempt() -> None:
    older = _pod(
        3,
        json.dumps(_summary(status="failed", exitCode=3, reason="ConnectionError")),
        "2026-11-30T02:01:00Z",
    )
    newer = _pod(
        4,
        json.dumps(_summary(status="failed", exitCode=4, reason="DumpError")),
        "2026-11-30T02:03:00Z",
    )
    result = results.from_job(_job("Failed", "BackoffLimitExceeded"), [older, newer], "dump", NOW)
    assert result is not None
    assert result.reason == "DumpError"


def test_per_database_lines_and_globals_are_validated_before_they_reach_status() -> None:
    sha = "a" * 64
    lines = [
        {"database": "app", "status": "ok", "artifact": "n-20261130T020000Z.app.dump",
         "sizeBytes": 10, "sha256": sha},
        {"database": "bad", "status": "failed", "reason": "DumpError" * 20},
        {"database": "x" * 80, "status": "ok"},  # longer than any database name
        {"database": "evil", "status": "ok", "artifact": "../../etc/passwd", "sha256": "zz"},
        "junk",
    ]  # fmt: skip
    globals_ = {"status": "ok", "artifact": "n-20261130T020000Z.globals.sql", "sha256": sha,
                "rolePasswords": False, "password": "never"}  # fmt: skip
    summary = _summary(artifact=None, sha256=None, databases=lines, globals=globals_)
    result = results.from_termination(
        "job-1", _terminated(json.dumps(summary)), NOW, prefix="nightly", now=NOW
    )
    assert result.succeeded
    assert [d["database"] for d in result.databases] == ["app", "bad", "evil"]
    assert result.databases[0]["sha256"] == sha
    assert len(result.databases[1]["reason"]) <= 64
    assert result.databases[2] == {"database": "evil", "status": "ok"}
    assert result.globals is not None
    assert "password" not in result.globals
    assert result.globals["rolePasswords"] is False
