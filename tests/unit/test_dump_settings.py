"""Settings parsing and the credential-source priority (no database needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from learnops_dump.connection import URL_SOURCES, resolve_target
from learnops_dump.errors import ConfigError
from learnops_dump.settings import Compression, DumpFormat, Retention, Settings, VerifyMode


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({"BACKUP_STORAGE_ROOT": "/backup"})
    assert s.storage_root == Path("/backup")
    assert s.timeout_seconds == 300
    assert s.format is DumpFormat.CUSTOM
    assert s.verify is VerifyMode.LIST
    assert s.termination_log == Path("/dev/termination-log")
    assert str(s.retention) == "last=7,daily=7,weekly=4,monthly=6"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zstd:3", ("zstd", 3)),
        ("gzip", ("gzip", 6)),
        ("LZ4:12", ("lz4", 12)),
        ("none", ("none", 0)),
    ],
)
def test_compression_parses_algorithm_and_level(text: str, expected: tuple[str, int]) -> None:
    c = Compression.parse(text)
    assert (c.algorithm, c.level) == expected


@pytest.mark.parametrize("text", ["brotli", "zstd:0", "zstd:99", "gzip:x", "lz4:13"])
def test_bad_compression_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_COMPRESSION"):
        Compression.parse(text)


def test_retention_rules_parse_and_missing_ones_are_zero() -> None:
    assert Retention.parse("last=3, weekly=2") == Retention(last=3, daily=0, weekly=2, monthly=0)
    for bad in ("yearly=1", "last=-1", "last", ""):
        with pytest.raises(ConfigError, match="BACKUP_RETENTION"):
            Retention.parse(bad)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUP_FORMAT", "tar"),
        ("BACKUP_VERIFY", "maybe"),
        ("BACKUP_TIMEOUT_SECONDS", "soon"),
        ("BACKUP_TIMEOUT_SECONDS", "-1"),
        ("BACKUP_PREFIX", "../x"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_pgpassword_is_refused_rather_than_passed_on() -> None:
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        resolve_target({"PGPASSWORD": "x"})


def _url(tag: str) -> str:
    tag = tag.lower()  # URL host names are case-insensitive; urlsplit lowercases them
    return f"postgresql://u_{tag}:pw_{tag}@h_{tag}:5432/db_{tag}"


# Every way a source can be given: absent, plain variable, _FILE, _FILE pointing nowhere, both.
FORMS = ("absent", "plain", "file", "missing_file", "both")


@pytest.mark.parametrize("forms", list(itertools.product(FORMS, repeat=3)))
def test_dsn_priority_matrix(tmp_path: Path, forms: tuple[str, str, str]) -> None:
    env = {"PGPASSFILE": "/secrets/pgpass", "PGHOST": "libpq-host"}
    expected: tuple[str, str] | None = None
    for name, form in zip(URL_SOURCES, forms, strict=True):
        file = tmp_path / name
        if form in ("plain", "both"):
            env[name] = _url(f"{name}_plain")
        if form in ("file", "both"):
            file.write_text(_url(f"{name}_file") + "\n")
            env[f"{name}_FILE"] = str(file)
        if form == "missing_file":
            env[f"{name}_FILE"] = str(tmp_path / "nowhere")
        if expected is None and form in ("plain", "both"):
            expected = (name, f"h_{name.lower()}_plain")  # the plain variable beats its own _FILE
        elif expected is None and form == "file":
            expected = (f"{name}_FILE", f"h_{name.lower()}_file")
    target, source = resolve_target(env)
    if expected is None:
        assert (source, target.host, target.passfile) == (
            "PGPASSFILE",
            "libpq-host",
            Path("/secrets/pgpass"),
        )
    else:
        assert (source, target.host) == expected
        assert target.password is not None
        assert target.password.reveal() == f"pw_{expected[1][2:]}"


def test_an_empty_variable_falls_through_to_the_next_source() -> None:
    target, source = resolve_target({"SESSION_DATABASE_URL": " ", "DATABASE_URL": _url("d")})
    assert (source, target.dbname) == ("DATABASE_URL", "db_d")


def test_url_parts_become_libpq_variables_and_the_password_stays_opaque() -> None:
    target, _ = resolve_target(
        {
            "DATABASE_URL": "postgresql://app%40x:p%3Aw%40d@db.example:6543/my%20db"
            "?sslmode=verify-full&application_name=bk",
            "PGSSLMODE": "disable",
        }
    )
    params = dict(target.params)
    assert params == {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "app@x",
        "PGDATABASE": "my db",
        "PGSSLMODE": "verify-full",
        "PGAPPNAME": "bk",
    }
    assert target.password is not None
    assert target.password.reveal() == "p:w@d"
    assert "p:w@d" not in repr(target)
    assert "p:w@d" not in str(target.password)


@pytest.mark.parametrize(
    "url", ["mysql://u:p@h/db", "postgresql://u:p@h:notaport/db", "postgresql://h/db?evil=1"]
)
def test_bad_urls_are_config_errors_without_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_target({"BACKUP_DATABASE_URL": url})
    assert "BACKUP_DATABASE_URL" in str(err.value)
    assert ":p@" not in str(err.value)


def test_a_url_without_password_still_uses_the_pgpass_file() -> None:
    target, source = resolve_target(
        {"DATABASE_URL": "postgresql://u@h/db", "PGPASSFILE": "/secrets/pgpass"}
    )
    assert source == "DATABASE_URL"
    assert target.passfile == Path("/secrets/pgpass")


def test_the_storage_subdir_is_a_relative_path_inside_the_root() -> None:
    s = Settings.from_env({"BACKUP_STORAGE_ROOT": "/backup", "BACKUP_STORAGE_SUBDIR": "team-a/db/"})
    assert s.require_storage_root() == Path("/backup/team-a/db")
    assert Settings.from_env({"BACKUP_STORAGE_ROOT": "/backup"}).require_storage_root() == Path(
        "/backup"
    )


@pytest.mark.parametrize("bad", ["/etc", "../up", "a/../../b", "a//b", "./a", "a b", "x" * 256])
def test_a_storage_subdir_that_could_leave_the_root_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_STORAGE_SUBDIR"):
        Settings.from_env({"BACKUP_STORAGE_ROOT": "/backup", "BACKUP_STORAGE_SUBDIR": bad})
