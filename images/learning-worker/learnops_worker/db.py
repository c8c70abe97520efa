"""Connections, and the one place where driver exceptions become worker errors."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from .errors import DatabaseUnavailable
from .settings import Settings

Connection = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT_SECONDS = 5
"""A database that does not answer within this is treated as unreachable."""
STATEMENT_TIMEOUT_MS = 30_000
"""No worker statement is long; a stuck one must not stall a heartbeat forever."""


def connect(settings: Settings, *, purpose: str, lock_timeout_ms: int = 0) -> Connection:
    """An autocommit connection; every worker statement is its own short transaction."""
    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    if lock_timeout_ms:
        options += f" -c lock_timeout={lock_timeout_ms}"
    try:
        return psycopg.connect(
            settings.database_url.reveal(),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=f"learning-worker:{purpose}",
            options=options,
        )
    except psycopg.Error as exc:
        raise translate(exc) from None


def translate(exc: psycopg.Error) -> DatabaseUnavailable:
    """Keep the server's reason, drop anything that could echo the connection string."""
    reason = type(exc).__name__
    if exc.diag.message_primary:
        reason = f"{reason}: {exc.diag.message_primary}"
    elif isinstance(exc, psycopg.OperationalError):
        # libpq messages name host/port/user but never the password.
        reason = f"{reason}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return DatabaseUnavailable(f"database error ({reason})")


class Pool:
    """A tiny fixed-size pool: handler threads borrow a connection for cache lookups."""

    def __init__(self, settings: Settings, size: int, purpose: str) -> None:
        self._settings = settings
        self._purpose = purpose
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = connect(self._settings, purpose=self._purpose)
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok and not conn.closed:
                    self._idle.put(conn)
                else:
                    conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
