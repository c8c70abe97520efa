"""Database selection and globals settings, artifact labels, and the bounded summary."""

from __future__ import annotations

import json

import pytest
from learnops_dump.databases import label
from learnops_dump.errors import ConfigError
from learnops_dump.report import TERMINATION_LIMIT, termination_message
from learnops_dump.settings import Settings

BASE = {"BACKUP_STORAGE_ROOT": "/backup", "PGDATABASE": "app"}


def test_database_list_is_parsed_from_json_and_any_name_is_allowed() -> None:
    names = ["app", "Kurs 2026/ä,b", 'quote"d']
    settings = Settings.from_env({**BASE, "BACKUP_DATABASES": json.dumps(names)})
    assert settings.databases == tuple(names)
    assert not settings.all_databases


@pytest.mark.parametrize(
    "value",
    ["app,reports", "[]", '"app"', "[1]", '[""]', '["a","a"]', json.dumps(["x" * 64])],
)
def test_a_bad_database_list_is_a_config_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_DATABASES"):
        Settings.from_env({**BASE, "BACKUP_DATABASES": value})


def test_a_list_and_all_databases_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        Settings.from_env({**BASE, "BACKUP_DATABASES": '["a"]', "BACKUP_ALL_DATABASES": "true"})


def test_role_passwords_are_off_by_default_and_need_globals() -> None:
    settings = Settings.from_env({**BASE, "BACKUP_GLOBALS": "true"})
    assert settings.dump_globals
    assert not settings.role_passwords
    with pytest.raises(ConfigError, match="needs BACKUP_GLOBALS"):
        Settings.from_env({**BASE, "BACKUP_GLOBALS_ROLE_PASSWORDS": "true"})
    with pytest.raises(ConfigError, match="BACKUP_GLOBALS: must be true or false"):
        Settings.from_env({**BASE, "BACKUP_GLOBALS": "maybe"})


def test_labels_are_file_name_safe_and_distinct() -> None:
    assert label("app_2") == "app_2"
    odd = [label(n) for n in ("a b", "a_b", "a/b", "a.b", "..", "ä")]
    assert len(set(odd)) == len(odd)
    for text in odd:
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in text)


def test_a_summary_of_many_databases_fits_the_termination_limit() -> None:
    lines = [
        {"database": f"db_{i:03d}", "status": "ok", "artifact": f"x-20261201T000000Z.{i}.dump",
         "sizeBytes": 10**9, "sha256": "f" * 64, "stages": [], "verification": {}}
        for i in range(200)
    ]  # fmt: skip
    summary: dict[str, object] = {k: None for k in ("artifact", "sizeBytes", "sha256")}
    summary.update(
        status="ok", exitCode=0, reason="Ok", message="", startedAt="", finishedAt="",
        durationSeconds=1.0, database="app", host="db", clientVersion="18.6", serverVersion="18",
        format="custom", compression="zstd:3", runnerVersion="0", databases=lines,
    )  # fmt: skip
    text = termination_message(summary)
    assert len(text.encode()) <= TERMINATION_LIMIT
    data = json.loads(text)
    assert data["databasesOmitted"] == 200 - len(data["databases"])
    assert data["databases"][0]["database"] == "db_000"
    assert "sha256" not in data["databases"][0]
