"""Run a command and others beside it; fail if any fails (`make test`).

`python -m tests.harness.together [--beside LABEL=COMMAND]... -- MAIN...`

make test runs the suite and, at the same time, the worker's tests on other PostgreSQL majors:
most of their time is waiting, so side by side they take little more than the longer one.
MAIN's output goes to the terminal as it comes; each COMMAND's (split like a shell would, no
shell involved) is kept in a file and printed once MAIN has ended, so they never interleave.

SIGINT and SIGTERM are forwarded to every command still running, and we wait until each has
ended (its teardown done). The exit status is MAIN's if MAIN failed, else the first failing
command's, else 0.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO


@dataclass
class Command:
    label: str
    argv: list[str]
    log: IO[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    _watcher: threading.Thread = field(init=False, repr=False)

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
        )
        # a watcher notes when the command really ended: a command beside MAIN is only waited
        # for after MAIN, and its reported time must be its own
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self.seconds = time.monotonic() - self.started

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._watcher.join()
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


def parse(argv: list[str]) -> tuple[Command, list[Command]]:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.together")
    parser.add_argument("--beside", action="append", default=[], metavar="LABEL=COMMAND")
    parser.add_argument("main", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    main = args.main[1:] if args.main[:1] == ["--"] else args.main
    if not main:
        parser.error("no main command after --")
    beside = []
    for spec in args.beside:
        label, sep, command = spec.partition("=")
        if not sep or not command.strip():
            parser.error(f"--beside {spec!r}: want LABEL=COMMAND")
        beside.append(Command(label, shlex.split(command)))
    return Command("main", main), beside


def run(main: Command, beside: list[Command]) -> int:
    everyone = [main, *beside]

    def forward(signum: int, frame: FrameType | None) -> None:
        for command in everyone:
            if command.proc is not None and command.proc.poll() is None:
                command.proc.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    with tempfile.TemporaryDirectory(prefix="learnops-together-") as tmp:
        for index, command in enumerate(beside):
            command.log = (Path(tmp) / f"{index}.log").open("wb")
            command.start()
        main.start()
        codes = {main.label: main.wait()}
        for command in beside:
            if command.proc is not None and command.proc.poll() is None:
                print(f"[together] waiting for {command.label}", flush=True)
            codes[command.label] = command.wait()
            assert command.log is not None
            command.log.close()
            print(f"\n{'=' * 20} {command.label}: {shlex.join(command.argv)}", flush=True)
            sys.stdout.buffer.write(Path(command.log.name).read_bytes())
            sys.stdout.flush()
    print("\n[together] " + "; ".join(
        f"{c.label}: exit {codes[c.label]} in {c.seconds / 60:.0f} min {c.seconds % 60:.0f} s"
        for c in everyone
    ), flush=True)  # fmt: skip
    failed = [codes[c.label] for c in everyone if codes[c.label] != 0]
    return failed[0] if failed else 0


def main(argv: list[str]) -> int:
    first, beside = parse(argv)
    return run(first, beside)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
