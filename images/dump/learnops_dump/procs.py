"""Child processes under one deadline: timeout and SIGTERM stop them the same way.

A watchdog thread waits for the deadline or a stop request (the SIGTERM handler
only sets an event, which is safe in a signal handler), then sends TERM to every
live child and KILL after a grace. The main thread's blocking reads then see
EOF, and `check()` turns the stop into `TimedOut` (exit 5).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import IO, Any

from .errors import RunnerError, TimedOut
from .masking import MaskedTail, masked_tail

log = logging.getLogger(__name__)
# Directories a child may find its tools in; nothing else of our PATH is inherited.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL_BYTES = 8192
CLEANUP_SECONDS = 10
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    """Owns the deadline and every child process of one run."""

    def __init__(self, timeout_seconds: float, kill_grace_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.kill_grace_seconds = kill_grace_seconds
        self._deadline = time.monotonic() + timeout_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self.reason: str | None = None
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="deadline", daemon=True)
        self._watchdog.start()

    # -- stopping --------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Signal-handler safe: record why and wake the watchdog."""
        if self.reason is None:
            self.reason = reason
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def check(self) -> None:
        """Raise TimedOut if the deadline passed or a stop was requested."""
        if self.reason is None and time.monotonic() >= self._deadline:
            self.request_stop(f"timed out after {self.timeout_seconds:g}s")
        if self.reason is not None:
            raise TimedOut(self.reason)

    def as_stop(self, exc: RunnerError) -> RunnerError:
        """A failure that follows a stop is the stop (exit 5): a child killed by our
        SIGTERM fails its stage, and that must not read as a broken artifact."""
        if self.stopped and not isinstance(exc, TimedOut):
            return TimedOut(self.reason)
        return exc

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def close(self) -> None:
        """End the watchdog without stopping anything (the run is over)."""
        self._closed = True
        self._stop.set()

    def _watch(self) -> None:
        if not self._stop.wait(self.timeout_seconds):
            self.request_stop(f"timed out after {self.timeout_seconds:g}s")
        if self._closed and self.reason is None:
            return
        log.warning("stopping child processes", extra={"event": "run.stopping", "why": self.reason})
        self._signal_all(signal.SIGTERM)
        end = time.monotonic() + self.kill_grace_seconds
        while time.monotonic() < end and self._alive():
            time.sleep(0.05)
        if self._alive():
            self._signal_all(signal.SIGKILL)

    def _alive(self) -> bool:
        with self._lock:
            return any(p.poll() is None for p in self._children)

    def _signal_all(self, sig: signal.Signals) -> None:
        with self._lock:
            children = list(self._children)
        for proc in children:
            with contextlib.suppress(ProcessLookupError):
                if proc.poll() is None:
                    proc.send_signal(sig)

    # -- spawning --------------------------------------------------------
    def run_cleanup(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes) -> int:
        """Run a short cleanup command even after a stop (e.g. drop the scratch database)."""
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.communicate(stdin, timeout=CLEANUP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start a child in the deadline's care; argv and env never hold secrets."""
        self.check()
        proc = subprocess.Popen(list(argv), env=dict(env), close_fds=True, **kwargs)
        with self._lock:
            self._children.add(proc)
        if self.stopped:  # a stop raced with the start: the watchdog may have missed it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        return proc

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        rc = proc.wait()
        with self._lock:
            self._children.discard(proc)
        return rc

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdin: bytes | None = None,
        capture_limit: int = 1 << 20,
    ) -> tuple[int, str, str]:
        """Run to completion; returns (rc, stdout, masked stderr tail), bounded in memory."""
        proc = self.spawn(
            argv,
            env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = _communicate(proc, stdin, capture_limit)
        rc = self.wait(proc)
        self.check()
        return rc, out.decode("utf-8", "replace"), err

    @contextlib.contextmanager
    def handle_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT/SIGHUP stop the run like the timeout does (kubelet's deadline), so
        every exit path we control still runs the cleanup (the private pgpass goes)."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.request_stop(f"terminated by {signal.Signals(signum).name}")

        previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _communicate(
    proc: subprocess.Popen[bytes], stdin: bytes | None, limit: int
) -> tuple[bytes, str]:
    """Like communicate(), but bounded: at most `limit` bytes of stdout, and the masked
    tail of stderr (masked before it is cut)."""
    out = bytearray()
    err = MaskedTail(STDERR_TAIL_BYTES)

    def drain_err(stream: IO[bytes]) -> None:
        while block := stream.read(65536):
            err.feed(block)

    assert proc.stdout is not None
    assert proc.stderr is not None
    reader = threading.Thread(target=drain_err, args=(proc.stderr,), daemon=True)
    reader.start()
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    while block := proc.stdout.read(65536):
        if len(out) < limit:
            out += block[: limit - len(out)]
    reader.join()
    return bytes(out), err.text()


def file_tail(stream: IO[bytes], limit: int = STDERR_TAIL_BYTES) -> str:
    """The masked tail of a captured stderr file, read whole in chunks (masked before the cut)."""
    stream.seek(0)
    return masked_tail(iter(lambda: stream.read(1 << 16), b""), limit)


def tail(data: bytes, limit: int = STDERR_TAIL_BYTES) -> str:
    """The last `limit` bytes of a child's output as text, masked before the cut."""
    return masked_tail([data], limit)


def child_env(params: Mapping[str, str], passfile: str | None, tmpdir: str) -> dict[str, str]:
    """A whitelist environment: libpq parameters, the private PGPASSFILE, nothing else."""
    env = {"PATH": SAFE_PATH, "LC_ALL": "C.UTF-8", "TMPDIR": tmpdir, "HOME": tmpdir}
    env.update(params)
    # Without a pgpass, point libpq at a file that does not exist so it never reads ~/.pgpass.
    env["PGPASSFILE"] = passfile or os.path.join(tmpdir, ".learnops-no-pgpass")
    return env
