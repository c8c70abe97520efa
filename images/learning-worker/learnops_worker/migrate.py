"""Applies migrations/NNNN_*.sql in order, once each, under an advisory lock (idempotent).

A migration is one transaction, unless its first line is `-- learnops: no-transaction`: then
its `-- step: name --` sections run one by one outside a transaction (CREATE INDEX
CONCURRENTLY needs that) and must each be idempotent; the version is recorded after the last.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

import psycopg

from . import db
from .errors import ConfigError
from .queries import Q, parse
from .settings import Settings

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_STEP = re.compile(r"^-- step: ([a-z0-9_]+) --\s*$", re.MULTILINE)
NO_TRANSACTION = "-- learnops: no-transaction"
LOCK_POLL_SECONDS = 0.2
"""How often a second `migrate` tries the advisory lock while the first one works."""
MIGRATE_STATEMENT_TIMEOUT_SECONDS = 3600.0
"""Index builds and validations on a big table take long; they block nobody."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def steps(self) -> list[tuple[str, str]]:
        return list(parse(_STEP.sub(lambda m: f"-- name: {m[1]} --", self.sql)).items())


def migrations() -> list[Migration]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"duplicate migration versions: {versions}")
    return found


def apply(conn: psycopg.Connection[tuple[object, ...]], upto: str | None = None) -> list[str]:
    """Apply what is missing (up to version `upto`); returns the names applied."""
    while not _fetch_bool(conn, Q.migrations_lock):
        time.sleep(LOCK_POLL_SECONDS)  # another `migrate` works; it may take a while
    applied_now: list[str] = []
    try:
        conn.execute(Q.migrations_table)
        done = {r[0] for r in conn.execute(Q.migrations_applied).fetchall()}
        for m in migrations():
            if m.version in done or (upto is not None and m.version > upto):
                continue
            if m.transactional:
                with conn.transaction():
                    conn.execute(m.sql.encode("utf-8"))
                    conn.execute(Q.migration_record, {"version": m.version})
            else:
                for name, sql in m.steps():
                    log.info("migration step", extra={"event": "migrate.step", "reason": name})
                    conn.execute(sql.encode("utf-8"))
                conn.execute(Q.migration_record, {"version": m.version})
            applied_now.append(m.name)
    finally:
        if not conn.closed:
            conn.execute(Q.migrations_unlock)
    return applied_now


def _fetch_bool(conn: psycopg.Connection[tuple[object, ...]], query: str) -> bool:
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def run(settings: Settings) -> list[str]:
    try:
        with db.connect(
            settings,
            purpose="migrate",
            statement_timeout_seconds=MIGRATE_STATEMENT_TIMEOUT_SECONDS,
        ) as conn:
            conn.add_notice_handler(_log_notice)
            names = apply(conn)
    except psycopg.Error as exc:
        raise db.translate(exc) from None
    log.info("migrations applied", extra={"event": "migrate.done", "count": len(names)})
    return names


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    if diag.severity_nonlocalized == "WARNING":
        log.warning(diag.message_primary or "", extra={"event": "migrate.warning"})
