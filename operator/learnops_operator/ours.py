"""Which objects are ours: the labels we put on children, the selector we watch them by, and
the owner key that leads from a child back to its DatabaseBackup.

Every module that creates, watches, lists or attributes a child asks this one. Labels alone
never make a child count: a label can be copied by anyone who may create Jobs, the controller
owner reference (`controlled_by`) cannot point at a uid the author does not own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnops_operator.spec import API_VERSION, KIND, Owner

Key = tuple[str, str]

NAME = "learnops"
MANAGED_BY = "learnops-operator"
COMPONENT_BACKUP = "backup"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# What kopf watches (labels=...) and the sweep lists (label_selector=...).
SELECTOR: dict[str, str] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/component": COMPONENT_BACKUP,
}
SELECTOR_STRING = ",".join(f"{k}={v}" for k, v in SELECTOR.items())


def labels(owner_name: str, component: str = COMPONENT_BACKUP) -> dict[str, str]:
    """The app.kubernetes.io labels of every child; a superset of SELECTOR."""
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": component,
        INSTANCE_LABEL: owner_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": NAME,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_key(obj: Mapping[str, Any]) -> Key | None:
    """(namespace, DatabaseBackup name) a child claims by its instance label, if any."""
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    namespace = meta.get("namespace")
    if not name or not namespace:
        return None
    return str(namespace), str(name)


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference marked controller (at most one exists), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def controlled_by(obj: Mapping[str, Any], backup: Mapping[str, Any]) -> bool:
    """True only if `backup` (by uid) is the controller of `obj`, not merely named by a label."""
    uid = (backup.get("metadata") or {}).get("uid")
    ref = controller_of(obj)
    return bool(
        uid
        and ref is not None
        and ref.get("kind") == KIND
        and ref.get("apiVersion") == API_VERSION
        and ref.get("uid") == uid
    )
