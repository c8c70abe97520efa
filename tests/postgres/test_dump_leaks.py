"""Awkward passwords through deliberately leaky tools: the canary shows up nowhere."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg import sql

from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import (
    DumpWorld,
    ProcSampler,
    fake_clients,
    pgpass_line,
    run_runner,
    secret_forms,
    url_of,
)

# Each prints what a careless tool would: its environment, its argv, the pgpass it was given,
# on stderr, before doing the real work (or failing after it).
LEAK = 'env >&2; echo "argv: $*" >&2; cat "$PGPASSFILE" >&2; echo "pw=$(cat "$PGPASSFILE")" >&2'
LEAKY = {
    "pg_dump-ok": {"pg_dump": f'{LEAK}\nexec "$REAL/pg_dump" "$@"'},
    "pg_dump-fails": {"pg_dump": f'{LEAK}\n"$REAL/pg_dump" "$@"; exit 1'},
    "psql-fails": {"psql": f"{LEAK}\nexit 2"},
}
PASSWORDS = {
    "slash": "/",
    "question": "?",
    "hash": "#",
    "percent": "%41%",
    "line-separator": "\u2028\u0085",
    "pgpass-escaped": "\\:\\\\:",
    "json-escaped": '"\\u00e9\t\\',
}


def _canary(special: str) -> str:
    return f"Cnry{secrets.token_hex(6)}{special}{secrets.token_hex(3)}"


def _set_password(pg_cluster: PgCluster, conn: Conn, password: str) -> Conn:
    with pg_cluster.connect() as c:
        c.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(conn.user), sql.Literal(password)
            )
        )
    return Conn(conn.host, conn.port, conn.user, password, conn.dbname)


def _everywhere(world: DumpWorld, out: str, err: str, needles: list[str]) -> list[str]:
    """Every place a leak could land: outputs, the termination log, storage, TMPDIR."""
    found = [name for name, text in (("stdout", out), ("stderr", err)) if _has(text, needles)]
    for root in (world.storage, world.tmp):
        for path in root.rglob("*"):
            if path.is_file() and _has(path.read_bytes().decode("utf-8", "replace"), needles):
                found.append(str(path))
    if world.termlog.exists() and _has(world.termlog.read_text(), needles):
        found.append("termination-log")
    return found


def _has(text: str, needles: list[str]) -> bool:
    return any(n in text for n in needles)


@pytest.mark.parametrize("tool", sorted(LEAKY))
@pytest.mark.parametrize("source", ["pgpass", "url-file"])
@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_an_awkward_password_never_leaks_through_a_leaky_tool(
    dump_world: DumpWorld, pg_cluster: PgCluster, tool: str, source: str, kind: str
) -> None:
    password = _canary(PASSWORDS[kind])
    conn = _set_password(pg_cluster, dump_world.conn, password)
    env = dump_world.env(
        BACKUP_PG_CLIENT_DIRS=fake_clients(dump_world.base, **LEAKY[tool]),
        BACKUP_COMPRESSION="gzip:1",
    )
    if source == "pgpass":
        dump_world.pgpass.write_text(pgpass_line(conn))
    else:
        url_file = dump_world.base / "url"
        url_file.write_text(url_of(conn) + "\n")
        env.pop("PGPASSFILE")
        env["DATABASE_URL_FILE"] = str(url_file)
    needles = [*secret_forms(password), password[4:16]]
    with ProcSampler(needles) as sampler:
        result = run_runner(env)
    expected = {"pg_dump-ok": 0, "pg_dump-fails": 4, "psql-fails": 3}[tool]
    assert result.returncode == expected, result.stderr[-3000:]
    assert sampler.hits == []
    assert _everywhere(dump_world, result.stdout, result.stderr, needles) == []
    if expected:
        term = json.loads(dump_world.termlog.read_text())
        assert "PGPASSFILE=" in term["message"] or "argv:" in term["message"]  # the leak ran
    assert not [p for p in dump_world.tmp.iterdir() if p.name.startswith("learnops-pgpass-")]


@pytest.mark.parametrize("raw", ["/", "?", "#", "%", "@"])
def test_a_raw_url_password_that_would_be_misparsed_exits_2_echoing_nothing(
    dump_world: DumpWorld, raw: str
) -> None:
    # ("T" first: a '%' before two hex digits would be percent-encoding, not a misparse)
    head, tail = f"Cnry{secrets.token_hex(4)}", f"Tail{secrets.token_hex(4)}"
    conn = dump_world.conn
    url_file = dump_world.base / "url"
    url_file.write_text(
        f"postgresql://{conn.user}:{head}{raw}{tail}@{conn.host}:{conn.port}/{conn.dbname}\n"
    )
    env = dump_world.env(PGPASSFILE="", DATABASE_URL_FILE=str(url_file))
    with ProcSampler([head, tail]) as sampler:
        result = run_runner(env)
    assert result.returncode == 2, result.stderr
    term = json.loads(dump_world.termlog.read_text())
    assert term["reason"] == "ConfigError"
    assert "DATABASE_URL_FILE" in term["message"]
    assert "percent-encod" in term["message"] or "write it as %" in term["message"]
    assert _everywhere(dump_world, result.stdout, result.stderr, [head, tail]) == []
    assert sampler.hits == []


def test_a_percent_encoded_awkward_url_password_backs_up(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    password = _canary('/?#%@:\\\u2028"')
    conn = _set_password(pg_cluster, dump_world.conn, password)
    url = f"postgresql://{quote(conn.user)}:{quote(password, safe='')}@{conn.host}:{conn.port},"
    url += f"{conn.host}:{conn.port}/{conn.dbname}"  # and two hosts, as libpq allows
    env = dump_world.env(PGPASSFILE="", BACKUP_DATABASE_URL=url)
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    needles = secret_forms(password)
    # the runner's own environ holds the URL (the pod spec put it there); nothing else does
    assert _everywhere(dump_world, result.stdout, result.stderr, needles) == []
    term = json.loads(dump_world.termlog.read_text())
    assert term["host"] == f"{conn.host},{conn.host}"


def test_an_undecodable_url_file_exits_2_without_a_traceback(dump_world: DumpWorld) -> None:
    url_file = dump_world.base / "url"
    url_file.write_bytes(b"postgresql://u:\xff\xfe@h/db\n")
    result = run_runner(dump_world.env(PGPASSFILE="", DATABASE_URL_FILE=str(url_file)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "not UTF-8" in json.loads(dump_world.termlog.read_text())["message"]


def test_an_undecodable_pgpass_exits_2_without_a_traceback(dump_world: DumpWorld) -> None:
    dump_world.pgpass.write_bytes(b"*:*:*:u:\xff\xfe\n")
    os.chmod(dump_world.pgpass, 0o600)
    result = run_runner(dump_world.env())
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    manifest = next(Path(dump_world.storage).glob("t-*.manifest.json"))
    assert "not UTF-8" in json.loads(manifest.read_text())["message"]
