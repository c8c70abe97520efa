"""Leader election over a coordination.k8s.io/v1 Lease, so that two replicas never both act.

kopf's own peering pauses lower-priority peers but lets equal priorities run side by side, and a
Deployment's replicas all get the same priority; so we elect with a Lease (as client-go does):
the follower waits, the leader renews every `retry` seconds and stops itself if it cannot renew
within `renew_deadline` (< lease duration), so no two replicas ever act at the same time.
Expiry is judged by how long *we* have seen the record unchanged, never by comparing clocks.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from learnops_operator.rest import path, request

log = logging.getLogger(__name__)


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStore:
    """The one Lease, over HTTP (a unit test swaps in its own store)."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.api = api
        self.collection = path(
            "apis", "coordination.k8s.io", "v1", "namespaces", namespace, "leases"
        )
        self.item = f"{self.collection}/{path(name)[1:]}"

    def read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = request(self.api, "GET", self.item)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    def create(self, body: dict[str, Any]) -> None:
        request(self.api, "POST", self.collection, body=body)

    def replace(self, body: dict[str, Any]) -> None:
        request(self.api, "PUT", self.item, body=body)


class LeaseElector:
    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, duration: float
    ) -> None:
        self.store = LeaseStore(api, namespace, name)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.retry = max(0.5, duration / 5)
        self.renew_deadline = duration * 2 / 3
        self._observed: tuple[Any, ...] | None = None
        self.problem: str | None = None
        self._observed_at = time.monotonic()

    def step(self) -> bool:
        """Acquire or renew once; True if we hold the Lease afterwards.

        A failure sets `problem` (one readable sentence, for /readyz) and is logged once per
        distinct problem, not on every retry.
        """
        try:
            held = self._step()
        except ApiException as exc:
            self._trouble(self._explain(exc))
            return False
        except OSError as exc:
            self._trouble(f"the API server cannot be reached ({type(exc).__name__})")
            return False
        if self.problem is not None:
            log.info("lease reachable again", extra={"event": "lease.recovered"})
        self.problem = None
        return held

    def _explain(self, exc: ApiException) -> str:
        where = f"Lease {self.namespace}/{self.name}"
        try:
            details = json.loads(exc.body or "{}")
        except ValueError:
            details = {}
        kind = str((details.get("details") or {}).get("kind") or "")
        if exc.status == 404 and kind == "namespaces":
            return (
                f"the Lease namespace {self.namespace!r} does not exist: create it, or point "
                "--lease-namespace (POD_NAMESPACE in a pod) at the operator's namespace"
            )
        if exc.status == 403:
            return (
                f"RBAC: the operator's ServiceAccount may not read or write {where}: apply the "
                "leader-election Role of manifests/operator/ (or the chart)"
            )
        message = str(details.get("message") or exc.reason or "")[:200]
        return f"{where}: HTTP {exc.status} {message}".rstrip()

    def _trouble(self, problem: str) -> None:
        if problem != self.problem:
            log.warning(problem, extra={"event": "lease.error", "problem": problem})
        self.problem = problem

    def _step(self) -> bool:
        lease = self.store.read()
        now = _micro_now()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseDurationSeconds": max(1, round(self.duration)),
                    "leaseTransitions": 0,
                },
            }
            return self._write(body, create=True)
        spec = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity")
        if holder != self.identity:
            record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
            if record != self._observed:
                self._observed, self._observed_at = record, time.monotonic()
            duration = float(spec.get("leaseDurationSeconds") or self.duration)
            if holder and time.monotonic() - self._observed_at < duration:
                return False
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            log.info("taking over the lease", extra={"event": "lease.takeover", "previous": holder})
        spec.update(
            holderIdentity=self.identity,
            renewTime=now,
            leaseDurationSeconds=max(1, round(self.duration)),
        )
        return self._write(lease, create=False)

    def _write(self, body: dict[str, Any], create: bool) -> bool:
        try:
            if create:
                self.store.create(body)
            else:
                self.store.replace(body)
        except ApiException as exc:
            if exc.status in (409, 422):
                return False  # someone else wrote first (resourceVersion conflict)
            raise
        return True

    def release(self) -> None:
        """Hand over at once on a clean shutdown instead of making the follower wait it out."""
        try:
            lease = self.store.read()
            if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
            self.store.replace(lease)
            log.info("lease released", extra={"event": "lease.released"})
        except ApiException as exc:
            log.warning(self._explain(exc), extra={"event": "lease.error"})
        except OSError as exc:
            log.warning(
                "lease release failed", extra={"event": "lease.error", "error": type(exc).__name__}
            )
