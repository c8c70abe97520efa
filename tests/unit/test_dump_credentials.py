"""Credentials are read exactly as libpq reads them, and never echoed when they are odd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from learnops_dump.connection import resolve_target
from learnops_dump.credentials import lines, parse_line, pgpass_content, private_pgpass
from learnops_dump.errors import ConfigError
from learnops_dump.logs import JsonFormatter
from learnops_dump.masking import MaskedTail, forget_secrets, mask, register_secret
from learnops_dump.procs import tail

CANARY = "Cn7Q"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    "password",
    [f"{CANARY}/tail", f"{CANARY}?x=1", f"{CANARY}#frag", f"{CANARY}%zz", f"{CANARY}@at"],
)
def test_a_url_password_that_would_be_misparsed_is_a_config_error_echoing_nothing(
    password: str,
) -> None:
    url = f"postgresql://app:{password}@db.example:5432/app"
    with pytest.raises(ConfigError) as caught:
        resolve_target({"DATABASE_URL": url})
    text = caught.value.message
    assert text.startswith("DATABASE_URL: ")
    assert CANARY not in text
    assert not any(part in text for part in ("tail", "x=1", "frag", "zz", "db.example"))


@pytest.mark.parametrize("password", ["a/b?c#d%e", "p\u2028q\u0085r", 'q"\\:x', "é+ü"])
def test_a_percent_encoded_url_password_arrives_intact(password: str) -> None:
    url = f"postgresql://app:{quote(password, safe='')}@db:5432/app"
    target, _ = resolve_target({"DATABASE_URL": url})
    assert target.password is not None
    assert target.password.reveal() == password
    assert dict(target.params)["PGDATABASE"] == "app"


def test_a_multi_host_url_becomes_libpq_host_and_port_lists() -> None:
    url = "postgresql://app:pw@db1:5432,db2,[2001:db8::1]:5433/app?target_session_attrs=primary"
    target, _ = resolve_target({"DATABASE_URL": url})
    params = dict(target.params)
    assert params["PGHOST"] == "db1,db2,2001:db8::1"
    assert params["PGPORT"] == "5432,,5433"
    assert params["PGTARGETSESSIONATTRS"] == "primary"


def test_an_undecodable_url_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_bytes(b"postgresql://app:\xff\xfe@db/app\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        resolve_target({"DATABASE_URL_FILE": str(path)})


def test_an_undecodable_pgpass_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_bytes(b"db:5432:app:u:\xff\n")
    target, _ = resolve_target({"PGPASSFILE": str(path)})
    with pytest.raises(ConfigError, match="not UTF-8"):
        pgpass_content(target)


def test_pgpass_lines_split_only_on_newline_like_libpq() -> None:
    content = "h:5432:db:u:pa\u2028ss\u0085x\r\n #h:1:db:u:notacomment\n#h:1:db:u:comment\n\n"
    got = lines(content)
    assert got == ["h:5432:db:u:pa\u2028ss\u0085x", " #h:1:db:u:notacomment"]
    entry = parse_line(got[0])
    assert entry is not None
    assert entry.password == "pa\u2028ss\u0085x"


@pytest.mark.parametrize(
    ("line", "password"),
    [
        ("h:5432:db:u:p\\:w\\\\d", "p:w\\d"),
        ("h:5432:db:u:pw:ignored", "pw"),
        ("h\\:x:5432:db:u:pw", "pw"),
        ("h:5432:db:u:a\\bc", "abc"),
        ("h:5432:db:u:trailing\\", "trailing\\"),
    ],
)
def test_pgpass_fields_unescape_like_libpq(line: str, password: str) -> None:
    entry = parse_line(line)
    assert entry is not None
    assert entry.password == password


def test_the_private_copy_repeats_raw_entries_for_any_database(tmp_path: Path) -> None:
    path = tmp_path / "pgpass"
    path.write_text("h\\:x:5432:db:u\\\\:p\\:w\n")
    target, _ = resolve_target({"PGPASSFILE": str(path)})
    with private_pgpass(target, tmp_path / "..") as copy:
        assert copy is not None
        assert copy.read_text().splitlines() == [
            "h\\:x:5432:db:u\\\\:p\\:w",
            "h\\:x:5432:*:u\\\\:p\\:w",
        ]
    assert mask("p\\:w and p:w") == "*** and ***"


@pytest.mark.parametrize("secret", ["s3cr:t\\x", 'q"uo\\te', "ü\u2028ß", "a/b?c#d%e"])
def test_every_spelling_of_a_secret_is_masked(secret: str) -> None:
    register_secret(secret)
    forms = [
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        secret.replace("\\", "\\\\").replace(":", "\\:"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]
    for form in forms:
        assert mask(f"<{form}>") == "<***>", form


def test_a_log_line_masks_a_secret_before_json_escapes_it() -> None:
    import logging

    register_secret('ü\u2028"ß')
    record = logging.makeLogRecord(
        {"msg": 'failed: ü\u2028"ß', "event": "x", "detail": ['ü\u2028"ß']}
    )
    line = JsonFormatter().format(record)
    assert "***" in line
    assert "\\u2028" not in line
    assert "ß" not in line


def test_a_secret_straddling_the_cut_is_masked_before_the_cut() -> None:
    secret = "S" * 40 + "ECRET"
    register_secret(secret)
    data = b"x" * 10_000 + secret.encode() + b"y" * 8170
    text = tail(data, 8192)
    assert "ECRET" not in text
    stream = MaskedTail(8192)
    for i in range(0, len(data * 30), 777):
        stream.feed((data * 30)[i : i + 777])
    assert "ECRET" not in stream.text()
