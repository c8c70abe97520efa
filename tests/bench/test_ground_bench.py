"""How fast the test ground comes up: control plane and PostgreSQL, warm caches (make bench)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from tests.harness.controlplane import LocalControlPlane, k8s_bindir
from tests.harness.postgres import PgCluster, pg_bindir

RUNS = 3


def test_ground_start_times() -> None:
    bindir = k8s_bindir()
    plane_times, pg_times = [], []
    for _ in range(RUNS):
        workdir = Path(tempfile.mkdtemp(prefix="learnops-bench-k8s-"))
        plane = LocalControlPlane(workdir, bindir)
        try:
            plane.start()
            plane_times.append(plane.start_seconds)
        finally:
            plane.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        pg_bin = pg_bindir()
        assert pg_bin is not None
        began = time.monotonic()
        cluster = PgCluster(pg_bin).start()
        pg_times.append(time.monotonic() - began)
        cluster.stop()
    print(
        f"\ncontrol plane warm start (etcd+apiserver+controller-manager ready): "
        f"min {min(plane_times):.1f}s max {max(plane_times):.1f}s over {RUNS} runs"
        f"\nPostgreSQL initdb+start+template: min {min(pg_times):.1f}s max {max(pg_times):.1f}s"
    )
