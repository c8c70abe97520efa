"""The masker removes passwords, URI userinfo and password= values from any text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from learnops_dump.masking import forget_secrets, mask, register_secret
from learnops_dump.report import Report, termination_message


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_registered_secrets_vanish_in_raw_and_percent_encoded_form() -> None:
    register_secret("s3cr:t@x")
    text = mask("failed for s3cr:t@x and s3cr%3At%40x")
    assert "s3cr" not in text


@pytest.mark.parametrize(
    "text",
    [
        'connection to "postgresql://app:hunter2@db:5432/x" failed',
        "postgres://app:hunter2@db/x",
        "host=db password=hunter2 user=app",
        "host=db password = 'hunter 2' user=app",
        "PASSWORD: hunter2",
    ],
)
def test_unknown_secrets_in_connection_strings_are_masked(text: str) -> None:
    assert "hunter" not in mask(text)


def test_ordinary_text_is_unchanged() -> None:
    text = 'pg_dump: error: query failed: ERROR:  permission denied for table "x"'
    assert mask(text) == text


def test_the_termination_message_fits_4096_bytes_and_keeps_its_keys() -> None:
    from datetime import UTC, datetime

    from learnops_dump.errors import DumpFailed

    report = Report(datetime.now(UTC), "db", "host", "custom", "zstd:3", "PGPASSFILE")
    report.fail(DumpFailed("ä" * 10000))
    text = termination_message(report.summary())
    assert len(text.encode()) <= 4096
    assert text.startswith('{"status":"failed","exitCode":4,"reason":"DumpError"')
    assert '"runnerVersion"' in text
