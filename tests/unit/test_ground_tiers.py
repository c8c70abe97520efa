"""Under CI a missing prerequisite fails its tier; elsewhere the tier skips with its reason."""

from __future__ import annotations

import pytest

from tests.harness import tiers


def test_a_missing_prerequisite_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="postgres tier unavailable: no initdb"):
        tiers.unavailable("postgres", "no initdb")


def test_a_missing_prerequisite_skips_with_its_reason_outside_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="container tier unavailable: no dockerd"):
        tiers.unavailable("container", "no dockerd")


def test_a_missing_binary_names_itself_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match=r"'no-such-tool' not found on PATH \(run `make deps`\)"
    ):
        tiers.need_binary("cluster", "no-such-tool")
