"""Backups, restores and drills whose pods really run on the kind node but play a scenario of
tests/e2e/scenario-image instead of dumping (hostile or chosen termination messages and exit
codes). The operator under test names that image as its dump image (`scenario_operator` in
tests/e2e/conftest.py); a resource picks its pods' scenario through the user they connect as
(PGUSER): the DatabaseBackup's database.user, a restore's target.user, a drill's server.user.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from learnops_operator.builders import on_demand_job_name

from tests.harness.kube import KubeCluster
from tests.harness.wait import wait_for
from tests.support.operator import Namespace, backup


def scenario_backup(name: str, scenario: str = "default", **spec: Any) -> dict[str, Any]:
    """A DatabaseBackup whose runs play run/<scenario>; a failed pod fails its Job at once."""
    database = {
        "host": "db.example",
        "dbname": "app",
        "user": scenario,
        "pgpassSecretRef": {"name": "pg-backup"},
    }
    return backup(name, **{"database": database, "backoffLimit": 0, **spec})


def ready(ns: Namespace, name: str) -> None:
    wait_for(lambda: ns.condition(name, "Ready").get("status") == "True", 30, f"{name} Ready")


def trigger(ns: Namespace, name: str, token: str) -> str:
    """Start an on-demand run of DatabaseBackup `name`; the name of its Job."""
    ns.kubectl("annotate", "dbb", name, "--overwrite", f"learnops.io/backup-now={token}")
    return on_demand_job_name(name, token)


def recorded(ns: Namespace, name: str, job: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until `job`'s result is on DatabaseBackup `name`; its status."""
    st: dict[str, Any] = wait_for(
        lambda: (s := ns.status(name)).get("lastReportedJob") == job and s,
        timeout,
        f"{job}'s result on {name}",
    )
    return st


def run(ns: Namespace, name: str, token: str) -> tuple[str, dict[str, Any]]:
    """One on-demand run of `name`, waited for: (its Job, the status that records it)."""
    job = trigger(ns, name, token)
    return job, recorded(ns, name, job)


def add_secret(ns: Namespace, name: str, key: str = "pgpass") -> None:
    """A credentials Secret for a pod to mount (the scenarios never read it)."""
    line = f"scratch.example:5432:*:user:{secrets.token_hex(8)}\n"
    ns.kubectl(
        "create", "secret", "generic", name, f"--from-file={key}=/dev/stdin", input=line
    )  # fmt: skip


def events_of(ns: Namespace, reason: str, name: str, at_least: int = 0) -> list[dict[str, Any]]:
    """The Events of `reason` about the object called `name` (see Namespace.events)."""
    return ns.events(reason, about=name, at_least=at_least)


@contextmanager
def shared_namespace(cluster: KubeCluster) -> Iterator[Namespace]:
    """A namespace enforcing the `restricted` Pod Security Standard, with the `backups` PVC and
    the pgpass Secret, for the runs a test module starts together (pods of several scenarios run
    side by side instead of one after another)."""
    name = f"t-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    ns = Namespace(cluster, name)
    try:
        ns.add_pvc()
        ns.add_pgpass_secret(secrets.token_hex(8))
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
