"""LISTEN for enqueue notifications and wake the claim loop; polling covers the gaps.

The listener checks its own connection when it has heard nothing for a while, because a
silently dead LISTEN connection would otherwise turn every wake-up into a poll.
"""

from __future__ import annotations

import logging
import threading
import time

from . import db
from .settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "learnops_jobs"
WAIT_SECONDS = 1.0
"""How long one wait for notifications blocks; bounds how fast the thread notices a stop."""
CHECK_AFTER_SECONDS = 10.0
"""Quiet time after which the connection is probed with a query."""
RECONNECT_PAUSE_SECONDS = 2.0
"""Pause before reconnecting a failed listener; polling carries on meanwhile."""


class Listener:
    def __init__(self, settings: Settings, wake: threading.Event) -> None:
        self._settings = settings
        self._wake = wake
        self._stop = threading.Event()
        self.healthy = False
        """True while LISTEN is active on a connection that answered its last probe."""
        self.thread = threading.Thread(target=self._run, name="listener", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # whatever broke LISTEN, polling carries on; try again
                self.healthy = False
                log.warning(
                    "listener lost its connection; polling only until it is back",
                    extra={"event": "listener.down", "error_type": type(exc).__name__},
                )
                self._stop.wait(RECONNECT_PAUSE_SECONDS)

    def _listen(self) -> None:
        conn = db.connect(self._settings, purpose="listen")
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            self.healthy = True
            self._wake.set()  # notifications sent while we were away are gone: look once
            quiet_since = time.monotonic()
            while not self._stop.is_set():
                heard = False
                for _ in conn.notifies(timeout=WAIT_SECONDS, stop_after=1):
                    heard = True
                if heard:
                    self._wake.set()
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > CHECK_AFTER_SECONDS:
                    conn.execute("SELECT 1")
                    quiet_since = time.monotonic()
        finally:
            self.healthy = False
            conn.close()
