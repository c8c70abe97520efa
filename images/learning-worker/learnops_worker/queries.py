"""Named SQL statements loaded once from queries.sql (`-- name: x --` headers)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*) --\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split SQL text into {name: statement}; text before the first header is ignored."""
    parts = _HEADER.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"query {name!r} is defined twice")
        statement = body.strip().rstrip(";").strip()
        if not statement:
            raise ValueError(f"query {name!r} is empty")
        named[name] = statement
    return named


@dataclass(frozen=True)
class Queries:
    """One attribute per statement, so a typo is a type error, not a runtime KeyError."""

    claim: str
    heartbeat: str
    complete: str
    retry: str
    fail: str
    release: str
    notify: str
    enqueue: str
    enqueue_existing: str
    cancel: str
    job_status: str
    worker_register: str
    worker_unregister: str
    retry_failed: str
    stats_by_status_kind: str
    stats_oldest_queued: str
    stats_leases: str
    stats_unhandled: str
    stats_workers: str
    depth_by_status: str
    cache_lock_timeout: str
    cache_lock_timeout_reset: str
    cache_lock: str
    cache_unlock: str
    cache_get: str
    cache_put: str
    retention_lock: str
    retention_unlock: str
    prune_jobs: str
    prune_cache: str
    prune_workers: str
    migrations_lock: str
    migrations_unlock: str
    migrations_table: str
    migrations_applied: str
    migration_record: str
    ping: str
    schema_present: str


def load() -> Queries:
    named = parse(resources.files(__package__).joinpath("queries.sql").read_text("utf-8"))
    expected = {f.name for f in fields(Queries)}
    if set(named) != expected:
        raise ValueError(
            f"queries.sql mismatch: missing {expected - set(named)}, extra {set(named) - expected}"
        )
    return Queries(**named)


Q = load()
