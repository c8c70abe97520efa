"""`kubectl learnops` run the way users run it: kubectl finds the `kubectl-learnops` console
script on PATH (tests/cluster/test_plugin.py, tests/e2e/test_plugin_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.kube import KubeCluster

BIN = Path(sys.executable).parent  # where `uv sync` installed kubectl-learnops


def _env(kube_cluster: KubeCluster, kubeconfig: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{kube_cluster.kubectl_path.parent}{os.pathsep}{env['PATH']}"
    env["KUBECONFIG"] = str(kubeconfig or kube_cluster.kubeconfig)
    return env


def plugin(
    kube_cluster: KubeCluster, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kube_cluster.kubectl_path), "learnops", *args],
        env=_env(kube_cluster, kubeconfig),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def background(kube_cluster: KubeCluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(kube_cluster.kubectl_path), "learnops", *args],
        env=_env(kube_cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
