"""How a test run ends on SIGINT or SIGTERM: every fixture's teardown runs, in every process.

One Ctrl-C or one killed `make test` reaches a pytest process more than once: the terminal
signals the whole process group, and `uv run`, make (SIGTERM) and tests/harness/together.py
forward what they get. So the first signal interrupts the session (KeyboardInterrupt, which
pytest answers by tearing every fixture down), and repeats within DUPLICATE_WINDOW are the same
interrupt. A signal after that window forces the end; the reapers (tests/harness/reaper.py) then
delete what teardown did not.

Under pytest-xdist the controller does not interrupt itself on the first signal: it forwards
SIGTERM to its workers and waits until they report their sessions finished, teardown included
(xdist would give a worker 10 seconds before killing it, less than deleting a kind cluster
takes), and it replaces no worker from then on. A worker interrupts its session on the first
signal and ignores every later one, so its teardown is never cut short; it is killed only when
the controller is forced. xdist reports the tests that were running as "crashed".
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import pytest

DUPLICATE_WINDOW = 5.0  # seconds after the first signal in which another is the same interrupt
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install(config: pytest.Config) -> None:
    """Handle SIGINT and SIGTERM in this pytest process (controller, worker or the only one)."""
    handler = _Worker() if hasattr(config, "workerinput") else _Session(config)
    for signum in SIGNALS:
        signal.signal(signum, handler)


def say(text: str) -> None:
    print(f"[interrupt] {text}", file=sys.stderr, flush=True)


class _Worker:
    """An xdist worker: the first signal interrupts its session, later ones are ignored."""

    def __init__(self) -> None:
        self.interrupted = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        raise KeyboardInterrupt(f"signal {signum}")


class _Session:
    """The controller of an xdist run, or a run without workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.first: float | None = None
        self.signalled: set[int] = set()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.first is not None and now - self.first < DUPLICATE_WINDOW:
            return
        if self.first is not None:
            say(f"signal {signum} again: not waiting for teardown any longer")
            if not self._distributing():
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            raise KeyboardInterrupt(f"signal {signum}, forced")
        self.first = now
        if not self._distributing():
            raise KeyboardInterrupt(f"signal {signum}")
        say(f"signal {signum}: stopping the workers; each tears its fixtures down")
        # xdist replaces a worker that ends interrupted as if it had crashed; not now
        dsession = self.config.pluginmanager.getplugin("dsession")
        if hasattr(dsession, "_max_worker_restart"):
            dsession._max_worker_restart = 0
        self.forward()

    def forward(self) -> None:
        """SIGTERM to every worker not signalled yet (also one that started after the signal)."""
        if self.first is None:
            return
        for pid in children(os.getpid()):
            if pid not in self.signalled:
                self.signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                    os.kill(pid, signal.SIGTERM)

    def _distributing(self) -> bool:
        return self.config.pluginmanager.getplugin("dsession") is not None


def forward_to_new_workers() -> None:
    """Called when an xdist worker comes up: one that starts after the signal stops at once."""
    handler = signal.getsignal(signal.SIGTERM)
    if isinstance(handler, _Session):
        handler.forward()


def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (xdist's workers are the controller's only children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may itself hold spaces and parentheses
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found
