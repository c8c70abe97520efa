"""Applies migrations/NNNN_*.sql in order, once each, under an advisory lock (idempotent)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from . import db
from .errors import ConfigError
from .queries import Q
from .settings import Settings

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


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


def apply(conn: db.Connection) -> list[str]:
    """Apply what is missing in one transaction; returns the names applied."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute(Q.migrations_lock)  # concurrent `migrate` runs queue up here
        conn.execute(Q.migrations_table)
        done = {r[0] for r in conn.execute(Q.migrations_applied).fetchall()}
        for m in migrations():
            if m.version in done:
                continue
            conn.execute(m.sql.encode("utf-8"))
            conn.execute(Q.migration_record, {"version": m.version})
            applied_now.append(m.name)
    return applied_now


def run(settings: Settings) -> list[str]:
    try:
        with db.connect(settings, purpose="migrate") as conn:
            names = apply(conn)
    except psycopg.Error as exc:
        raise db.translate(exc) from None
    log.info("migrations applied", extra={"event": "migrate.done", "count": len(names)})
    return names
