"""Which tests share a pytest-xdist worker, and which start first (`make test`: `--dist
loadgroup`).

Session fixtures are per worker: each worker that needs one makes its own. That is right for
the cheap ones (a PostgreSQL cluster takes about a second, the local control plane four, image
builds are cache hits after the first), so their tests spread over the workers. Tests that
share an expensive resource go to one worker, so it is made once:
- the session's kind cluster (`kind_cluster`: the e2e platform, and the cluster tier under
  LEARNOPS_CLUSTER=kind), which also must exist once when LEARNOPS_KIND_NAME names it;
- the session fixtures named in SHARED (e.g. the 600 MB database);
- a module-, package- or class-scoped fixture (the cluster tier's operator process): its
  tests stay on one worker as one unit.

Work units go out in collection order, so the hook sorts the longest ones first: the e2e
tests that make a kind cluster of their own, then the e2e platform, then the cluster, container,
postgres and unit tiers (these fill the gaps at the end).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

KIND_GROUP = "kind"
# session fixtures too costly to make once per worker -> their group
SHARED = {"big_db": "big-db"}
# first to last
TIER_ORDER = ("e2e", "cluster", "container", "postgres", "unit", "bench")
NARROW_SCOPES = {"module", "package", "class"}


def tier_of(item: pytest.Item, tests_dir: Path) -> str:
    rel = Path(str(item.fspath)).resolve().relative_to(tests_dir)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def group_of(item: pytest.Item, tests_dir: Path) -> str | None:
    """The xdist group of a test, None when it may run on any worker."""
    tier = tier_of(item, tests_dir)
    names = set(getattr(item, "fixturenames", ()))
    if "kind_cluster" in names or (
        tier == "cluster" and os.environ.get("LEARNOPS_CLUSTER", "local") == "kind"
    ):
        return KIND_GROUP
    for fixture, group in SHARED.items():
        if fixture in names:
            return group
    if isinstance(item, pytest.Function):
        for defs in item._fixtureinfo.name2fixturedefs.values():
            if any(d.scope in NARROW_SCOPES for d in defs):
                return f"module:{item.nodeid.split('::')[0]}"
    return None


def start_order(item: pytest.Item, tests_dir: Path) -> int:
    """Sort key: e2e tests with a cluster of their own, the kind group, then by tier."""
    tier = tier_of(item, tests_dir)
    if tier == "e2e":
        return 0 if group_of(item, tests_dir) != KIND_GROUP else 1
    return 2 + (TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER))


def assign(config: pytest.Config, items: list[pytest.Item], tests_dir: Path) -> None:
    """Mark every test's group and put the longest work first (only in xdist workers)."""
    if not hasattr(config, "workerinput"):
        return
    for item in items:
        group = group_of(item, tests_dir)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: start_order(item, tests_dir))  # stable: modules stay together
