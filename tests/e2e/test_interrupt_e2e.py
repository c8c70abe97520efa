"""A killed `make test` leaves nothing of ours running: no kind node container, no cluster, no
process of the run (pytest's processes, the lanes and commands beside it, kind, the reaper,
a PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.harness.kind import leftovers
from tests.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-e", "-o", "sid=,pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.split(None, 1)[0] == str(sid)]


def _processes_naming(needle: str) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if needle in line and "ps -e" not in line]


def test_sigterm_to_make_test_deletes_the_kind_cluster_and_leaves_no_process(
    e2e_images: list[str],  # the images exist; only the interrupted run's cluster is new
) -> None:
    name = f"learnops-killed-{os.getpid()}"
    env = {**os.environ, "LEARNOPS_KIND_NAME": name, "CI": "true"}
    make = subprocess.Popen(
        # the default run's shape: the e2e tier in a lane of its own (the kind cluster lives
        # there), a short main suite, the worker's other-major runs beside them; `-o lint`
        # skips the linters: they leave nothing running and cost ~25 CPU-seconds
        ["make", "-o", "lint", "test", "LANES=tests/e2e/test_ground_e2e.py",
         "PYTEST_ARGS=tests/unit/test_ground_together.py -p no:cacheprovider"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        # Interrupt while the cluster is being made: its node container exists, kind still runs.
        wait_for(lambda: leftovers(name), 400, f"the node container of {name}", every=1)
        time.sleep(3)
        make.send_signal(signal.SIGTERM)
        make.wait(240)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(30)
    wait_for(lambda: not leftovers(name), 60, f"no container of {name}", every=1)
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout
    assert name not in clusters.split()
    wait_for(lambda: not _session_processes(make.pid), 30, "the run's processes to end", every=1)
    wait_for(lambda: not _processes_naming(name), 30, "the reaper and kind to end", every=1)
