"""What the e2e tier and the demo run on: a kind cluster with our images loaded and PostgreSQL
as a pod, plus the views of the node a user would take (files on a volume, the process list)."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .containers import Engine
from .dumpimage import build_dump_image
from .kind import KindCluster
from .kube import KubeCluster
from .podpostgres import IMAGE as POSTGRES_IMAGE
from .podpostgres import IMAGE_DIR as POSTGRES_DIR
from .podpostgres import PodPostgres

REPO = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"  # the chart's appVersion: the tags the chart and manifests/ use
# A dump image stand-in whose pods play scenario files (tests/e2e/scenario-image)
SCENARIO_IMAGE = "learnops/scenario-dump:test"
# tag -> (Dockerfile, build context), relative to the repository; what the demo needs
DEMO_IMAGES = {
    f"learnops/operator:{VERSION}": ("images/operator/Dockerfile", "."),
    f"learnops/dump:{VERSION}": ("images/dump/Dockerfile", "images/dump"),
    f"learnops/learning-worker:{VERSION}": ("images/learning-worker/Dockerfile", "."),
    POSTGRES_IMAGE: (f"{POSTGRES_DIR.relative_to(POSTGRES_DIR.parents[2])}/Dockerfile",
                     str(POSTGRES_DIR.relative_to(POSTGRES_DIR.parents[2]))),
}  # fmt: skip
# ... and what the e2e tier needs on top
IMAGES = {
    **DEMO_IMAGES,
    "learnops-smoke:test": ("tests/container/smoke/Dockerfile", "tests/container/smoke"),
    SCENARIO_IMAGE: ("tests/e2e/scenario-image/Dockerfile", "tests/e2e/scenario-image"),
    # the worker image plus tests/support/worker_handlers.py (built after the worker image it
    # extends)
    f"learnops/learning-worker:{VERSION}-e2e": ("tests/e2e/worker-image/Dockerfile", "tests"),
}  # fmt: skip


def build_image(engine: Engine, tag: str, dockerfile: str, context: str) -> str:
    """Build one of IMAGES; the dump image the way CI does (its 14-18 client bundles)."""
    if dockerfile == "images/dump/Dockerfile":
        return build_dump_image(engine, tag)
    return engine.build(tag, REPO / dockerfile, REPO / context)


@dataclass
class Platform:
    kind: KindCluster
    kube: KubeCluster
    pg: PodPostgres

    def volume_path(self, namespace: str, claim: str) -> str:
        """Where a bound claim's data lives on the node (local-path uses a hostPath PV)."""
        pv = self.kube.kubectl(
            "get", "pvc", claim, "-n", namespace, "-o", "jsonpath={.spec.volumeName}"
        ).stdout
        spec = json.loads(self.kube.kubectl("get", "pv", pv, "-o", "json").stdout)["spec"]
        path: str = (spec.get("hostPath") or spec.get("local"))["path"]
        return path

    def volume_files(self, namespace: str, claim: str) -> dict[str, bytes]:
        """Every regular file of a claim, by path relative to the volume, read on the node."""
        path = self.volume_path(namespace, claim)
        out = self.kind.node_exec_bytes("tar", "-C", path, "-cf", "-", ".")
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(out)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member)
                    assert data is not None
                    files[member.name.removeprefix("./")] = data.read()
        return files

    def node_processes(self) -> str:
        """Every process on the node with its full command line and environment (`ps e`)."""
        return self.kind.node_exec("ps", "-eww", "-o", "pid,user,args", "e").stdout
