"""The provider result cache: one row per (handler, backend, model, input hash).

Identical inputs are serialised with an advisory lock on the key, so a duplicate submission
processed at the same moment waits for the first answer instead of paying for a second.
A pooled connection that died (a server restart) is replaced before the answer is paid for,
so a restart costs no attempt; an answer the cache cannot store fails the job for good
instead of being bought again on every attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import psycopg

from . import db, jsoncheck
from .db import Pool, translate
from .errors import PermanentFailure
from .models import MAX_RESULT_BYTES, JsonValue
from .queries import Q

log = logging.getLogger(__name__)


def input_hash(inputs: JsonValue) -> str:
    """sha256 of canonical JSON: key order and whitespace do not change the key."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PgResultCache:
    def __init__(self, pool: Pool, lock_wait_seconds: float, ttl_seconds: float) -> None:
        self._pool = pool
        self._lock_wait_seconds = lock_wait_seconds
        self._ttl_seconds = ttl_seconds

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
        conn = self._locked(key, lock)
        try:
            row = conn.execute(Q.cache_get, {**key, "ttl_seconds": self._ttl_seconds}).fetchone()
            if row is not None:
                return row[0]
            result = compute()
            try:
                text = jsoncheck.dumps(result, max_bytes=MAX_RESULT_BYTES)
            except jsoncheck.Unstorable as exc:
                raise PermanentFailure(f"the provider's answer cannot be stored: {exc}") from None
            try:
                conn.execute(Q.cache_put, {**key, "result": text})
            except psycopg.Error as exc:  # paid for already: hand it on, the job's write stores it
                log.warning(
                    "answer not cached",
                    extra={"event": "cache.put_failed", "error_type": type(exc).__name__},
                )
            return result
        except psycopg.Error as exc:
            raise translate(exc) from None
        finally:
            ok = not conn.closed
            if ok:
                try:
                    conn.execute(Q.cache_unlock, lock)
                except psycopg.Error:
                    ok = False
            self._pool.give_back(conn, ok=ok)  # a failed one is closed: its lock goes too

    def _locked(self, key: dict[str, str], lock: dict[str, str]) -> db.Connection:
        """A connection holding the key's lock. A pooled connection that turns out dead is
        replaced once, transparently: nothing was paid for yet."""
        while True:
            conn, reused = self._pool.borrow()
            normal = conn.client_timeout
            # The lock wait may last a whole provider call of another worker.
            conn.client_timeout = self._lock_wait_seconds + db.CLIENT_MARGIN_SECONDS
            try:
                wait_ms = str(int(self._lock_wait_seconds * 1000))
                conn.execute(Q.cache_lock_timeout, {"timeout_ms": wait_ms})
                conn.execute(Q.cache_lock, lock)
                conn.execute(Q.cache_lock_timeout_reset)
                return conn
            except psycopg.Error as exc:
                self._pool.give_back(conn, ok=False)
                if reused and db.transient(exc):
                    log.info(
                        "pooled connection was dead; using a new one",
                        extra={"event": "cache.reconnect", "error_type": type(exc).__name__},
                    )
                    continue
                raise translate(exc) from None
            finally:
                conn.client_timeout = normal
