"""Fixtures of the container tier: our images, built once per session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import tiers
from tests.harness.containers import Engine
from tests.harness.dumpimage import BundlesMissing, build_dump_image
from tests.support.worker import ROOT


@pytest.fixture(scope="session")
def dump_image(container_engine: Engine) -> str:
    """images/dump built once per session on the local bookworm base, clients 14-18 as CI has."""
    try:
        return build_dump_image(container_engine, "learnops-dump:test")
    except BundlesMissing as exc:
        tiers.unavailable("container", str(exc))


@pytest.fixture(scope="session")
def worker_image(container_engine: Any) -> str:
    """images/learning-worker built once per session (context: the repository root)."""
    tag: str = container_engine.build(
        "learnops-learning-worker:test", ROOT / "images/learning-worker/Dockerfile", ROOT
    )
    return tag
