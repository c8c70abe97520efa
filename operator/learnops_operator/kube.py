"""The few API calls the operator makes, as plain JSON requests (blocking; called from threads).

Responses are plain dicts (camelCase, as the API sends them), so the pure modules never see
client model classes. Server-side apply owns the CronJob's fields: a manual edit of those fields
is reverted by the next apply, while fields we never set stay untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from learnops_operator.rest import APPLY, STRATEGIC, path, request
from learnops_operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)
FIELD_MANAGER = "learnops-operator"
STATUS_RETRIES = 8
PVC_CACHE_SECONDS = 10.0

StatusMutation = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any] | None]


def api_message(exc: ApiException) -> str:
    """The API's own explanation (Status.message), bounded."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        message = str(exc.reason)
    return message[:512]


def namespace_terminating(exc: BaseException) -> bool:
    """The API refuses new objects in a namespace being deleted (403): nothing to repair there."""
    return (
        isinstance(exc, ApiException)
        and exc.status == 403
        and "being terminated" in str(exc.body or "")
    )


def is_transient(exc: BaseException) -> bool:
    """Worth a retry: throttling, server trouble, conflicts, or no answer at all."""
    if isinstance(exc, ApiException):
        return exc.status in (409, 429) or (exc.status or 0) >= 500
    return isinstance(exc, OSError)


class Kube:
    """One shared ApiClient (its connection pool is thread-safe) and typed-enough helpers."""

    def __init__(self, api: client.ApiClient, identity: str) -> None:
        self.api = api
        self.identity = identity
        self._pvcs: dict[tuple[str, str], float] = {}

    def _call(self, method: str, url_path: str, **kwargs: Any) -> Any:
        return request(self.api, method, url_path, **kwargs)

    @staticmethod
    def _ours(namespace: str, plural: str, *rest: str) -> str:
        return path("apis", GROUP, VERSION, "namespaces", namespace, plural, *rest)

    @staticmethod
    def _batch(namespace: str, plural: str, *rest: str) -> str:
        return path("apis", "batch", "v1", "namespaces", namespace, plural, *rest)

    @staticmethod
    def _core(namespace: str | None, plural: str, *rest: str) -> str:
        if namespace is None:
            return path("api", "v1", plural, *rest)
        return path("api", "v1", "namespaces", namespace, plural, *rest)

    # -- DatabaseBackup ---------------------------------------------------------------------
    def get_backup(self, namespace: str, name: str, plural: str = PLURAL) -> dict[str, Any] | None:
        """A DatabaseBackup (or, with `plural`, another of our kinds); None if it is gone."""
        try:
            body: dict[str, Any] = self._call("GET", self._ours(namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def update_status(
        self,
        namespace: str,
        name: str,
        mutate: StatusMutation,
        known: Mapping[str, Any] | None = None,
        plural: str = PLURAL,
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Read-modify-write of .status guarded by resourceVersion; retried on conflict.

        `mutate(status, body)` returns the new status or None for "nothing to change". Returns
        (old, new) when written, None when unchanged or the resource is gone. `known`, a body
        just received from the watch, saves the first read; a stale one only costs a conflict.
        """
        for attempt in range(STATUS_RETRIES):
            if attempt == 0 and known is not None:
                body: dict[str, Any] | None = json.loads(json.dumps(known, default=dict))
            else:
                body = self.get_backup(namespace, name, plural)
            if body is None:
                return None
            old = dict(body.get("status") or {})
            new = mutate(old, body)
            if new is None or new == old:
                return None
            body["status"] = new
            try:
                self._call("PUT", self._ours(namespace, plural, name, "status"), body=body)
            except ApiException as exc:
                if exc.status in (404, 409):
                    continue  # conflict: re-read and re-apply the mutation
                raise
            return old, new
        raise ApiException(status=409, reason=f"status of {namespace}/{name} kept conflicting")

    # -- children ---------------------------------------------------------------------------
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of a CronJob; returns the live object."""
        meta = obj["metadata"]
        data: dict[str, Any] = self._call(
            "PATCH",
            self._batch(meta["namespace"], "cronjobs", meta["name"]),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=obj,
            content_type=APPLY,
        )
        return data

    def get_cronjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = self._call("GET", self._batch(namespace, "cronjobs", name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    def create_job(self, obj: Mapping[str, Any]) -> bool:
        """True if created, False if a Job of that name already exists (idempotent by name)."""
        meta = obj["metadata"]
        try:
            self._call("POST", self._batch(meta["namespace"], "jobs"), body=obj)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def suspend_cronjob(self, namespace: str, name: str) -> None:
        """A CronJob we no longer want runs no more (no delete verb: GC removes it with us)."""
        try:
            self._call(
                "PATCH",
                self._batch(namespace, "cronjobs", name),
                body={"spec": {"suspend": True}},
                content_type=STRATEGIC,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def job_exists(self, namespace: str, name: str) -> bool:
        try:
            self._call("GET", self._batch(namespace, "jobs", name))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pvc_exists(self, namespace: str, name: str) -> bool:
        """Positive answers are cached briefly: 500 backups sharing one PVC need one read."""
        key = (namespace, name)
        seen = self._pvcs.get(key)
        if seen is not None and time.monotonic() - seen < PVC_CACHE_SECONDS:
            return True
        try:
            self._call("GET", self._core(namespace, "persistentvolumeclaims", name))
        except ApiException as exc:
            if exc.status == 404:
                self._pvcs.pop(key, None)
                return False
            raise
        self._pvcs[key] = time.monotonic()
        return True

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        pods = self._call(
            "GET", self._core(namespace, "pods"), query=[("labelSelector", f"job-name={job}")]
        )
        items: list[dict[str, Any]] = pods["items"]
        return items

    def backup_pods(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        pods = self._call("GET", self._core(namespace, "pods"), query=[("labelSelector", selector)])
        items: list[dict[str, Any]] = pods["items"]
        return items

    def pod_events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        events = self._call(
            "GET",
            self._core(namespace, "events"),
            query=[("fieldSelector", f"involvedObject.uid={uid}")],
        )
        items: list[dict[str, Any]] = events["items"]
        return items

    # -- learning worker clamp -------------------------------------------------------------
    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self._call(
            "PATCH",
            path("apis", "apps", "v1", "namespaces", namespace, "deployments", name, "scale"),
            body={"spec": {"replicas": replicas}},
            content_type=STRATEGIC,
        )

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        hpas = self._call("GET", self._hpas(namespace))
        items: list[dict[str, Any]] = hpas["items"]
        return items

    def patch_hpa(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        self._call(
            "PATCH", self._hpas(namespace, name), body={"spec": dict(spec)}, content_type=STRATEGIC
        )

    @staticmethod
    def _hpas(namespace: str, *rest: str) -> str:
        return path(
            "apis", "autoscaling", "v2", "namespaces", namespace, "horizontalpodautoscalers", *rest
        )

    # -- events ------------------------------------------------------------------------------
    def post_event(self, involved: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on `involved` (a body); failures are logged, never raised."""
        meta = involved.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name')}.",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": "learnops.io/operator",
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call("POST", self._core(str(meta.get("namespace")), "events"), body=event)
        except (ApiException, OSError) as exc:
            log.warning(
                "event not posted",
                extra={"event": "event.post_failed", "reason": reason, "error": str(exc)[:200]},
            )


def raw(obj: Any) -> dict[str, Any]:
    """A kopf Body (or any mapping) as a plain, JSON-clean dict."""
    data: dict[str, Any] = json.loads(json.dumps(obj, default=dict))
    return data
