"""WORKER_HANDLERS parsing and loading; the named SQL loader."""

from __future__ import annotations

import pytest
from learnops_worker import handlers
from learnops_worker.errors import HandlerSpecError
from learnops_worker.queries import Q, parse


def test_a_spec_extends_and_replaces_the_builtins() -> None:
    table = handlers.load(
        " grade = tests.support.worker_handlers:record ,"
        " feedback=tests.support.worker_handlers:flaky,"
    )
    assert set(table) == {"feedback", "noop", "grade"}
    assert table["grade"].__name__ == "record"
    assert table["feedback"].__name__ == "flaky"


def test_an_empty_spec_gives_the_builtins() -> None:
    assert set(handlers.load("")) == {"feedback", "noop"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("feedback", "has no '='"),
        ("=m:f", "invalid kind ''"),
        ("bad kind=m:f", "invalid kind 'bad kind'"),
        ("k=module", "target must be module:function"),
        ("k=mod-ule:f", "target must be module:function"),
        ("k=m:1f", "target must be module:function"),
        ("k=m:f,k=m:g", "names kind 'k' twice"),
    ],
)
def test_malformed_specs_are_rejected_with_the_entry_named(spec: str, message: str) -> None:
    with pytest.raises(HandlerSpecError, match=message):
        handlers.parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "k=no_such_module_abc:f",
            "cannot import module 'no_such_module_abc'.*ModuleNotFoundError",
        ),
        ("k=tests.support.worker_handlers:nope", "has no 'nope'"),
        ("k=tests.support.worker_handlers:not_callable", "is not callable"),
    ],
)
def test_unloadable_targets_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(HandlerSpecError, match=message) as info:
        handlers.load(spec)
    assert info.value.exit_code == 2


def test_named_queries_parse_and_reject_duplicates() -> None:
    assert parse("-- intro\n-- name: a --\nSELECT 1;\n-- name: b --\nSELECT 2;") == {
        "a": "SELECT 1",
        "b": "SELECT 2",
    }
    with pytest.raises(ValueError, match="twice"):
        parse("-- name: a --\nSELECT 1;\n-- name: a --\nSELECT 2;")
    assert "FOR UPDATE SKIP LOCKED" in Q.claim
    for fenced in (Q.heartbeat, Q.complete, Q.retry, Q.fail, Q.release):
        assert "lease_token = " in fenced  # every write after the claim names the token
