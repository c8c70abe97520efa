"""Deleting a kind cluster removes its node containers even when `kind delete` leaves one
behind (a node whose start was still in flight when an interrupt cut `kind create` short)."""

from __future__ import annotations

import secrets
import subprocess

from tests.harness.containers import Engine
from tests.harness.kind import CLUSTER_LABEL, leftovers, remove_cluster


def test_a_node_container_that_survives_kind_delete_is_still_removed(
    container_engine: Engine,
) -> None:
    name = f"learnops-survivor-{secrets.token_hex(3)}"
    # a container labelled as a node of cluster `name`, which `kind delete` does not remove:
    # `true` stands in for a kind whose delete ran before the node existed
    subprocess.run(
        ["docker", "run", "-d", "--name", f"{name}-control-plane",
         "--label", f"{CLUSTER_LABEL}={name}", "--network", "none",
         container_engine.base_image, "sleep", "300"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        assert leftovers(name) == [f"{name}-control-plane"]
        assert remove_cluster("true", name, patience=20) == []
        assert leftovers(name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", f"{name}-control-plane"], capture_output=True)
