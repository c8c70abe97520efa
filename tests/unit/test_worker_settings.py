"""Settings from the environment: the concurrency cap, validation, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from learnops_worker.errors import ConfigError
from learnops_worker.settings import CONCURRENCY_CAP, Secret, from_env

URL = {"DATABASE_URL": "postgresql://learnops@localhost/learnops"}


@pytest.mark.parametrize(
    ("raw", "effective", "warned"),
    [("1", 1, False), ("4", 4, False), ("5", 4, True), ("100", 4, True)],
)
def test_concurrency_is_clamped_to_the_cap_with_a_warning_naming_it(
    raw: str, effective: int, warned: bool
) -> None:
    settings = from_env({**URL, "WORKER_CONCURRENCY": raw})
    assert settings.concurrency == effective
    assert CONCURRENCY_CAP == 4
    if warned:
        [note] = settings.warnings
        assert "cap of 4" in note
        assert raw in note
    else:
        assert settings.warnings == ()


@pytest.mark.parametrize("raw", ["0", "-3"])
def test_concurrency_below_one_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY must be at least 1"):
        from_env({"WORKER_CONCURRENCY": raw})


def test_defaults() -> None:
    s = from_env(URL)
    assert (s.concurrency, s.http_port, s.global_max_inflight, s.max_attempts) == (1, 8080, 0, 5)
    assert s.heartbeat_seconds * 2 <= s.lease_seconds
    assert s.shutdown_timeout_seconds < 30  # below Kubernetes' default grace period


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKER_CONCURRENCY": "two"}, "must be an integer"),
        ({"WORKER_LEASE_SECONDS": "2", "WORKER_HEARTBEAT_SECONDS": "1.5"}, "at most half"),
        ({"WORKER_HTTP_PORT": "70000"}, "out of range"),
        ({"WORKER_GLOBAL_MAX_INFLIGHT": "-1"}, "out of range"),
        ({"WORKER_MAX_ATTEMPTS": "0"}, "out of range"),
        ({"FEEDBACK_BACKEND": "magic"}, "FEEDBACK_BACKEND"),
        ({"WORKER_POLL_SECONDS": "x"}, "must be a number"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(env)


def test_secrets_come_from_env_or_file_and_never_print(tmp_path: Path) -> None:
    f = tmp_path / "url"
    f.write_text("postgresql://u:hunter2@h/db\n")
    s = from_env({"DATABASE_URL_FILE": str(f)})
    assert s.database_url.reveal() == "postgresql://u:hunter2@h/db"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.database_url)
    # the plain variable beats its _FILE; a missing file counts as unset
    assert from_env({"DATABASE_URL": "x", "DATABASE_URL_FILE": str(f)}).database_url == Secret("x")
    key = tmp_path / "key"
    key.write_text("sk-abc\n")
    assert from_env({**URL, "OPENAI_API_KEY_FILE": str(key)}).openai_api_key.reveal() == "sk-abc"


def test_the_database_url_is_required_and_its_absence_is_a_config_error(tmp_path: Path) -> None:
    for env in ({}, {"DATABASE_URL_FILE": str(tmp_path / "absent")}, {"DATABASE_URL": "  "}):
        with pytest.raises(ConfigError, match=r"DATABASE_URL \(or DATABASE_URL_FILE\) is not set"):
            from_env(env)
    assert ConfigError.exit_code == 2
