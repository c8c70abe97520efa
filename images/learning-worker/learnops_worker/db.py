"""Connections, and the one place where driver exceptions become worker errors.

Every connection fails loudly instead of hanging: TCP keepalives and `tcp_user_timeout`
notice a dead peer, `statement_timeout` bounds work on the server, and a client-side deadline
on every wait bounds the rest (a black-holed connection acknowledges nothing and answers
nothing; only the client can notice). `interrupt_all()` cuts every open connection at once,
so a stop never waits on the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import weakref
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from .errors import DatabaseUnavailable
from .settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5
"""A database that does not answer within this is treated as unreachable."""
CLIENT_MARGIN_SECONDS = 2.0
"""The client waits this much longer than statement_timeout before it gives up itself."""
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
}
"""A peer that stops acknowledging keepalives is dead after about 10 + 3 x 3 seconds."""
TCP_USER_TIMEOUT_MS = 20_000
"""Sent data unacknowledged this long breaks the connection (Linux TCP_USER_TIMEOUT)."""

_open: weakref.WeakSet[GuardedConnection] = weakref.WeakSet()
_open_lock = threading.Lock()


class GuardedConnection(psycopg.Connection[tuple[Any, ...]]):
    """A connection whose every wait for the server has a client-side deadline."""

    client_timeout: float | None = None
    """Seconds one round trip may take before the connection is closed as dead."""

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:  # the caller's own deadline (e.g. notifies): its business
            return super().wait(gen, interval=interval, timeout=timeout)
        started = time.monotonic()
        try:
            return super().wait(gen, interval=interval, timeout=self.client_timeout)
        except pg_errors._WaitTimeout:
            waited = time.monotonic() - started
            log.warning(
                "no answer from the database; closing the connection",
                extra={"event": "db.timeout", "seconds": round(waited, 3)},
            )
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the database within {waited:.1f} s (client timeout)"
            ) from None


Connection = GuardedConnection


def connect(
    settings: Settings,
    *,
    purpose: str,
    lock_timeout_ms: int = 0,
    statement_timeout_seconds: float | None = None,
    connect_timeout: int = CONNECT_TIMEOUT_SECONDS,
) -> Connection:
    """An autocommit connection; every worker statement is its own short transaction."""
    statement = (
        settings.statement_timeout_seconds
        if statement_timeout_seconds is None
        else statement_timeout_seconds
    )
    options = f"-c statement_timeout={int(statement * 1000)}"
    if lock_timeout_ms:
        options += f" -c lock_timeout={lock_timeout_ms}"
    try:
        conn = GuardedConnection.connect(
            settings.database_url.reveal(),
            autocommit=True,
            connect_timeout=max(2, connect_timeout),
            application_name=f"learning-worker:{purpose}",
            options=options,
            tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            keepalives=KEEPALIVE["keepalives"],
            keepalives_idle=KEEPALIVE["keepalives_idle"],
            keepalives_interval=KEEPALIVE["keepalives_interval"],
            keepalives_count=KEEPALIVE["keepalives_count"],
        )
    except psycopg.Error as exc:
        raise translate(exc) from None
    conn.client_timeout = statement + CLIENT_MARGIN_SECONDS
    with _open_lock:
        _open.add(conn)
    return conn


def interrupt_all() -> int:
    """Shut down the socket of every open connection: blocked threads get an error at once."""
    with _open_lock:
        conns = list(_open)
    cut = 0
    for conn in conns:
        with contextlib.suppress(Exception):
            if conn.closed:
                continue
            fd = conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            cut += 1
    return cut


def transient(exc: BaseException) -> bool:
    """True for errors of the connection or the server's state (worth retrying as is);
    False for errors of the data sent (retrying the same write fails the same way)."""
    if isinstance(exc, DatabaseUnavailable | psycopg.InterfaceError):
        return True
    if isinstance(exc, pg_errors.ProgramLimitExceeded):  # e.g. stack depth: the data's fault
        return False
    return isinstance(exc, psycopg.OperationalError)


def translate(exc: psycopg.Error) -> DatabaseUnavailable:
    """Keep the server's reason, drop anything that could echo the connection string."""
    reason = type(exc).__name__
    if exc.diag.message_primary:
        reason = f"{reason}: {exc.diag.message_primary}"
    elif isinstance(exc, psycopg.OperationalError):
        # libpq messages name host/port/user but never the password.
        reason = f"{reason}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return DatabaseUnavailable(f"database error ({reason})")


def usable(conn: Connection) -> bool:
    """Cheap check of an idle connection: reads what the server sent (e.g. a restart's
    goodbye) without a round trip."""
    if conn.closed:
        return False
    try:
        conn.pgconn.consume_input()
    except psycopg.Error:
        return False
    return conn.pgconn.status == psycopg.pq.ConnStatus.OK and not conn.closed


class Pool:
    """A tiny fixed-size pool: handler threads borrow a connection for cache lookups."""

    def __init__(self, settings: Settings, size: int, purpose: str) -> None:
        self._settings = settings
        self._purpose = purpose
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def borrow(self) -> tuple[Connection, bool]:
        """A connection and whether it was pooled before (then it may have gone stale)."""
        self._slots.acquire()
        try:
            while True:
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    return connect(self._settings, purpose=self._purpose), False
                if usable(conn):
                    return conn, True
                conn.close()
        except BaseException:
            self._slots.release()
            raise

    def give_back(self, conn: Connection, *, ok: bool) -> None:
        if ok and not conn.closed:
            self._idle.put(conn)
        else:
            conn.close()
        self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class Health:
    """Whether the database answered lately, as seen by this process's own statements.

    /readyz reads this instead of opening a connection per probe: a probe must answer within
    its timeout even while the database is down or black-holed.
    """

    def __init__(self) -> None:
        self.last_ok = 0.0
        self.last_error = 0.0

    def ok(self) -> None:
        self.last_ok = time.monotonic()

    def failed(self) -> None:
        self.last_error = time.monotonic()

    def reachable(self) -> bool:
        return self.last_ok > 0 and self.last_ok >= self.last_error
