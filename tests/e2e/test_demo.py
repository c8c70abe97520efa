"""`make demo` keeps working on real pods: the chart's pods run, a backup reaches the resource
and the volume, the worker's pods drain the sample submissions, and the cluster is gone after."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness.kind import leftovers

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_backs_up_reports_and_grades_the_sample_submissions_on_real_pods(
    e2e_images: list[str],  # the images are built (the demo's builds are then cache hits)
) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "tests.demo"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = ran.stdout
    assert ran.returncode == 0, out[-4000:] + ran.stderr[-4000:]
    # The chart's pods ran on the node, the resource shows the result, the volume holds
    # artifact + manifest, the worker's pods drained the queue.
    pods = out.split("kubectl get pods -n learnops-system -o wide")[1].split("==>")[0]
    assert re.search(r"learnops-operator-\S+\s+1/1\s+Running", pods), pods
    assert re.search(r"learnops-worker-\S+\s+1/1\s+Running", pods), pods
    assert "Succeeded" in out.split("kubectl get databasebackups")[1].splitlines()[2]
    assert ".manifest.json" in out
    # `learning-worker stats` lists 40 succeeded feedback jobs (its columns are layout, not content)
    assert ["succeeded", "feedback", "40"] in [line.split() for line in out.splitlines()]
    assert "learnops_worker_jobs_succeeded_total" in out
    name = re.search(r"kind create cluster (learnops-demo-\w+)", ran.stderr + out)
    assert name is not None
    assert leftovers(name.group(1)) == []
