"""kopf's diff base ("last handled configuration") kept in memory instead of an annotation.

Persisting it costs one extra PATCH of every DatabaseBackup per handling cycle, and that write
comes back as one more watch event for kopf to process: at 500 resources created at once it was
a third of all API writes. Nothing needs it across restarts: the create and resume handlers are
the same idempotent reconcile, so an operator that starts with an empty memory (a restart, a new
leader) reconciles every resource once, exactly as the resume handler did with a stored diff
base. kopf's retry progress (after a failed attempt) still lives in `kopf.learnops.io/`
annotations, so backoff survives a restart.
"""

from __future__ import annotations

import json
from typing import Any, cast

import kopf

from learnops_operator.spec import KIND

BOOKKEEPING_PREFIX = "kopf.learnops.io"


class MemoryDiffBase(kopf.DiffBaseStorage):
    """The essence kopf diffs against, keyed by uid (a recreated resource starts afresh).

    The essence is built without kopf's deep copy of the whole body (managedFields and status
    were the largest single cost in the event loop): every top-level field except metadata and
    status, plus labels and annotations other than kopf's own bookkeeping. Other kinds (CronJobs,
    Jobs, Deployments...) only have event handlers and need no essence at all.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, str] = {}

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if body.get("kind") != KIND:
            return {}  # only DatabaseBackups have change handlers; other kinds never diff
        meta = body.get("metadata") or {}
        lean = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean_meta: dict[str, Any] = {}
        if meta.get("labels"):
            lean_meta["labels"] = meta["labels"]
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if not k.startswith(f"{BOOKKEEPING_PREFIX}/")
        }
        if annotations:
            lean_meta["annotations"] = annotations
        lean["metadata"] = lean_meta
        return super().build(body=kopf.Body(cast(kopf.RawBody, lean)), extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> Any:
        encoded = self._seen.get(str(body.get("metadata", {}).get("uid")))
        return None if encoded is None else json.loads(encoded)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        self._seen[str(body.get("metadata", {}).get("uid"))] = json.dumps(essence)

    def forget(self, uid: str) -> None:
        """The resource is gone: its essence would only take memory."""
        self._seen.pop(uid, None)
