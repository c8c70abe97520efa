"""The contract between the operator and the dump runner, checked with both sides' own code.

The operator writes the pod's environment, the runner reads it; the runner writes the
termination message, the operator reads it. Neither side is copied here: each test feeds one
package's output into the other package's input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from learnops_dump import errors as dump_errors
from learnops_dump.report import termination_message
from learnops_dump.settings import Settings as DumpSettings
from learnops_operator import builders, results
from learnops_operator.spec import Owner, parse

from tests.support.contract import pod_env, runner_summary

OWNER = Owner(namespace="team-a", name="nightly", uid="u-1", generation=1)
IMAGE = "registry.example/learnops/dump:1.2.3"


def _spec(database: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": "30 2 * * *",
        "database": database,
        "storage": {"persistentVolumeClaim": {"claimName": "backups"}},
        "timeoutSeconds": 900,
        "format": "directory",
        "compression": {"algorithm": "lz4", "level": 5},
        "retention": {"keepLast": 3, "keepDaily": 2, "keepWeekly": 1, "keepMonthly": 0},
        "verify": "restore",
    }
    spec.update(extra)
    return spec


def test_the_pod_environment_is_what_the_runner_reads(tmp_path: Path) -> None:
    spec = parse(
        _spec(
            {
                "host": "db.team-a.svc",
                "port": 5433,
                "dbname": "app",
                "user": "backup",
                "sslMode": "verify-full",
                "pgpassSecretRef": {"name": "pg", "key": "pgpass"},
            }
        )
    )
    settings = DumpSettings.from_env(pod_env(OWNER, spec, IMAGE, tmp_path))
    assert settings.storage_root == tmp_path / builders.STORAGE_ROOT.lstrip("/")
    assert settings.prefix == "nightly"
    assert settings.timeout_seconds == spec.runner_timeout_seconds
    assert settings.timeout_seconds < spec.timeout_seconds
    assert settings.format.value == "directory"
    assert str(settings.compression) == "lz4:5"
    assert (settings.retention.last, settings.retention.daily) == (3, 2)
    assert (settings.retention.weekly, settings.retention.monthly) == (1, 0)
    assert settings.verify.value == "restore"
    target = settings.target
    assert (target.host, target.port, target.dbname, target.user) == (
        "db.team-a.svc",
        "5433",
        "app",
        "backup",
    )
    assert target.get("PGSSLMODE") == "verify-full"
    assert target.source == "PGPASSFILE"
    assert target.passfile is not None
    assert target.passfile.name == "pgpass"


def test_a_url_secret_reaches_the_runner_through_the_mounted_file(tmp_path: Path) -> None:
    spec = parse(_spec({"urlSecretRef": {"name": "app-db"}}))
    url = "postgresql://backup@db.team-a.svc:6432/app"
    env = pod_env(OWNER, spec, IMAGE, tmp_path, secret_files={"DATABASE_URL": url})
    settings = DumpSettings.from_env(env)
    assert settings.target.source == "DATABASE_URL_FILE"
    assert (settings.target.host, settings.target.port) == ("db.team-a.svc", "6432")


def _parse(message: str, exit_code: int) -> results.RunResult:
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": "2026-11-30T02:00:00Z",
        "finishedAt": "2026-11-30T02:00:09Z",
    }
    now = datetime(2026, 11, 30, 3, tzinfo=UTC)
    return results.from_termination("nightly-1", terminated, now, prefix="nightly", now=now)


def test_a_successful_runners_message_is_a_recorded_success() -> None:
    summary = runner_summary("nightly")
    result = _parse(termination_message(summary), 0)
    assert result.succeeded
    assert result.artifact == summary["artifact"]
    assert result.size_bytes == summary["sizeBytes"]
    assert result.sha256 == summary["sha256"]
    assert result.duration_seconds == summary["durationSeconds"]


# Every failure the runner knows, with the exit code and reason it reports.
FAILURES: list[type[dump_errors.RunnerError]] = sorted(
    (
        cls
        for cls in vars(dump_errors).values()
        if isinstance(cls, type) and issubclass(cls, dump_errors.RunnerError) and cls.exit_code
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("error", FAILURES, ids=lambda c: c.__name__)
def test_every_runner_failure_reaches_status_with_its_reason_and_exit_code(
    error: type[dump_errors.RunnerError],
) -> None:
    summary = runner_summary("nightly", error=error("something went wrong"))
    result = _parse(termination_message(summary), error.exit_code)
    assert not result.succeeded
    assert (result.reason, result.exit_code) == (error.reason, error.exit_code)
    assert result.message == "something went wrong"


def test_the_operators_exit_code_table_is_the_runners() -> None:
    runner = {c.exit_code: c.reason for c in FAILURES} | {0: "Ok"}
    assert runner == results.REASON_BY_EXIT_CODE
    assert set(builders.NON_RETRYABLE_EXIT_CODES) == {
        dump_errors.ConfigError.exit_code,
        dump_errors.VerificationFailed.exit_code,
        dump_errors.VersionMismatch.exit_code,
    }


def test_a_longest_possible_message_still_parses() -> None:
    summary = runner_summary("nightly", error=dump_errors.DumpFailed("ü" * 5000))
    text = termination_message(summary)
    assert len(text.encode()) <= 4096
    result = _parse(text, dump_errors.DumpFailed.exit_code)
    assert result.reason == "DumpError"
    assert result.message == results.bounded(json.loads(text)["message"])


def test_whatever_the_runner_reports_passes_the_operators_strict_schema() -> None:
    """Hostile text inside a run (an error, a host name) is cleaned by the runner, so the
    operator never has to refuse a real runner's message."""
    nasty = "bad \x1b[31mthing\u202e\u2028" + "ü" * 3000
    for summary, code in (
        (runner_summary("nightly", error=dump_errors.DumpFailed(nasty)), 4),
        (runner_summary("nightly", host="h" * 600, database="d\x00b" * 200), 0),
    ):
        terminated = {"exitCode": code, "message": termination_message(summary)}
        now = datetime(2026, 11, 30, 3, tzinfo=UTC)
        result = results.from_termination("nightly-1", terminated, now, prefix="nightly", now=now)
        assert result.rejected is None, result.rejected
        assert result.exit_code == code
