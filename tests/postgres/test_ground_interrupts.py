"""An interrupted parallel run (`make test` uses pytest-xdist) tears down every worker's session
fixtures: no PostgreSQL server, data directory or process of the run is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLE = "tests/harness/samples/interrupted_run.py"


def _alive(pid: int) -> bool:
    """Running: a zombie (ended, not yet reaped by whoever adopted it) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-e", "-o", "sid=,pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.split(None, 1)[0] == str(sid)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_controller_stops_every_worker_after_its_teardown(
    tmp_path: Path, signum: signal.Signals
) -> None:
    env = {**os.environ, "LEARNOPS_INTERRUPT_PROBE": str(tmp_path)}
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", SAMPLE, "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-q"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(list(tmp_path.glob("*.json"))) == 2, 120, "both workers' servers")
        probes = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
        run.send_signal(signum)  # the controller only, as make and uv forward it
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(30)
    text = out.decode(errors="replace")
    assert run.returncode == 2, text  # interrupted, not passed
    assert "replacing crashed worker" not in text, text
    for probe in probes:
        # the teardown asked the server to stop; its last backend may take a moment to exit
        wait_for(partial(_gone, probe["postmaster"]), 30, f"postmaster gone\n{text}", every=0.2)
        assert not Path(probe["base"]).exists(), text
    wait_for(lambda: not _session_processes(run.pid), 30, "the run's processes to end", every=1)
