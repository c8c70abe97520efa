"""`make demo` keeps working: a backup reaches the resource and storage, the worker drains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.containers import Engine

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_backs_up_reports_and_processes_the_sample_submissions(
    container_engine: Engine,
) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "tests.demo"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = ran.stdout
    assert ran.returncode == 0, out[-4000:] + ran.stderr[-4000:]
    # The resource shows the result, storage holds artifact + manifest, the worker drained.
    assert "Succeeded" in out.split("kubectl get databasebackups")[1].splitlines()[2]
    assert '"status": "ok"' in out
    assert ".manifest.json" in out
    assert "succeeded  feedback                       40" in out
    assert "learnops_worker_jobs_succeeded_total" in out
