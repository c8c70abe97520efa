"""The operator image starts against the local control plane and serves its liveness endpoint."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.containers import RUNTIME_UID, Engine
from tests.harness.net import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = "learnops/operator:test"


def _portable_kubeconfig(source: Path, target: Path) -> None:
    """Embed the CA so the kubeconfig works inside the container (no host paths)."""
    cfg: dict[str, Any] = yaml.safe_load(source.read_text())
    for cluster in cfg["clusters"]:
        ca = cluster["cluster"].pop("certificate-authority", None)
        if ca:
            cluster["cluster"]["certificate-authority-data"] = base64.b64encode(
                Path(ca).read_bytes()
            ).decode()
    target.write_text(yaml.safe_dump(cfg))
    os.chown(target, RUNTIME_UID, RUNTIME_UID)
    target.chmod(0o400)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http on loopback)
        return resp.status, resp.read().decode()


def _first_json_line(cid: str, deadline: float) -> str | None:
    while True:
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stderr
        first = next((line for line in logs.splitlines() if line.startswith("{")), None)
        if first is not None or time.monotonic() > deadline:
            return first
        time.sleep(0.5)


def test_the_operator_image_serves_liveness_as_its_service_account(
    container_engine: Engine, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    container_engine.build(IMAGE, REPO / "images/operator/Dockerfile", REPO)
    kubeconfig = tmp_path / "kubeconfig"
    _portable_kubeconfig(operator_kubeconfig, kubeconfig)
    health, metrics = free_port(), free_port()
    argv = container_engine.run_argv(
        IMAGE,
        [],
        memory="256m",
        detach=True,
        mounts=[(kubeconfig, "/etc/learnops/kubeconfig", True)],
        env={
            "KUBECONFIG": "/etc/learnops/kubeconfig",
            "LEARNOPS_LIVENESS_PORT": str(health),
            "LEARNOPS_METRICS_PORT": str(metrics),
            "LEARNOPS_READINESS_PORT": str(free_port()),
            "POD_NAME": "operator-image-test",
        },
    )
    cid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline, status, body = time.monotonic() + 60, 0, ""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{health}/healthz")
                break
            except OSError:
                time.sleep(0.5)
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stderr
        assert status == 200, logs[-3000:]
        assert json.loads(body) is not None
        assert "learnops_operator" in _get(f"http://127.0.0.1:{metrics}/metrics")[1]
        user = subprocess.run(
            ["docker", "inspect", "-f", "{{.Config.User}}", cid],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert user == f"{RUNTIME_UID}:{RUNTIME_UID}"
        # JSON log lines, one object each. The first is logged after the API preflight, which a
        # loaded machine can finish after /healthz answers, so read the logs until it is there.
        first = _first_json_line(cid, deadline=time.monotonic() + 30)
        assert first is not None, logs[-3000:]
        assert "event" in json.loads(first) or "message" in json.loads(first)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
    print(f"\noperator image size: {container_engine.image_size(IMAGE) / 2**20:.0f} MiB")
