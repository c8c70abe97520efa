"""The provider result cache: one row per (handler, backend, model, input hash).

Identical inputs are serialised with an advisory lock on the key, so a duplicate submission
processed at the same moment waits for the first answer instead of paying for a second.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from .db import Pool, translate
from .models import JsonValue
from .queries import Q


def input_hash(inputs: JsonValue) -> str:
    """sha256 of canonical JSON: key order and whitespace do not change the key."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PgResultCache:
    def __init__(self, pool: Pool, lock_wait_seconds: float) -> None:
        self._pool = pool
        self._lock_wait_ms = str(int(lock_wait_seconds * 1000))

    def get_or_compute(
        self,
        *,
        handler: str,
        backend: str,
        model: str,
        inputs: JsonValue,
        compute: Callable[[], JsonValue],
    ) -> JsonValue:
        key = {
            "handler": handler,
            "backend": backend,
            "model": model,
            "input_hash": input_hash(inputs),
        }
        lock = {"key": "|".join(str(v) for v in key.values())}
        try:
            with self._pool.connection() as conn:
                conn.execute(Q.cache_lock_timeout, {"timeout_ms": self._lock_wait_ms})
                conn.execute(Q.cache_lock, lock)
                conn.execute(Q.cache_lock_timeout_reset)
                try:
                    row = conn.execute(Q.cache_get, key).fetchone()
                    if row is not None:
                        return row[0]
                    result = compute()
                    conn.execute(Q.cache_put, {**key, "result": Jsonb(result)})
                    return result
                finally:
                    if not conn.closed:
                        conn.execute(Q.cache_unlock, lock)
        except psycopg.Error as exc:
            raise translate(exc) from None
