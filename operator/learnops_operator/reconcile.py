"""Reconcile: a DatabaseBackup's spec becomes its CronJob, and Ready says whether that worked.

`desired` is the pure decision (the CronJob to apply, or why there is none); `reconcile` carries
it out. Both are safe to repeat after a restart or on a second replica: the CronJob is
server-side applied and every status write is guarded by resourceVersion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from learnops_operator import builders, policy, status
from learnops_operator.announce import announce_transition
from learnops_operator.context import Context
from learnops_operator.errors import InvalidSpec, MissingReference
from learnops_operator.kube import api_message
from learnops_operator.spec import BackupSpec, Owner, parse

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Desired:
    """What the DatabaseBackup asks for: its parsed spec and the CronJob that serves it."""

    owner: Owner
    spec: BackupSpec
    cronjob: dict[str, Any]


@dataclass(frozen=True)
class Invalid:
    """The spec cannot be served; `why` is the Ready=False message."""

    owner: Owner
    why: str
    reason: str = "InvalidSpec"


def desired(body: Mapping[str, Any], bounds: policy.PodPolicy) -> Desired | Invalid:
    """The pure decision for one DatabaseBackup, without any API call."""
    owner = Owner.from_body(body)
    try:
        spec = parse(body.get("spec") or {})
    except InvalidSpec as exc:
        return Invalid(owner, str(exc))
    image = policy.check(spec, bounds)
    if isinstance(image, policy.Refusal):
        return Invalid(owner, image.message, image.reason)
    return Desired(owner, spec, builders.cronjob(owner, spec, image))


def _not_ready(ctx: Context, body: Mapping[str, Any], owner: Owner, reason: str, why: str) -> None:
    written = ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: status.not_ready(st, reason, why, owner.generation, _now()),
        known=body,
    )
    announce_transition(ctx, body, written, status.READY, "Warning", reason, why)


def reconcile(ctx: Context, body: Mapping[str, Any]) -> None:
    """Create or repair the CronJob, then report Ready. Raises InvalidSpec / MissingReference."""
    plan = desired(body, ctx.policy)
    if isinstance(plan, Invalid):
        _not_ready(ctx, body, plan.owner, plan.reason, plan.why)
        raise InvalidSpec(plan.why)  # permanent until the spec (or the operator's policy) changes
    owner, spec = plan.owner, plan.spec
    try:
        ctx.kube.apply(plan.cronjob)
    except ApiException as exc:
        if exc.status != 422:
            raise
        # what admission of our CR cannot see, e.g. a malformed quantity in spec.resources
        why = f"the CronJob was rejected: {api_message(exc)}"
        _not_ready(ctx, body, owner, "InvalidSpec", why)
        raise InvalidSpec(why) from None
    name = plan.cronjob["metadata"]["name"]
    # Object storage has no claim to wait for (its Secret the operator may not read).
    if spec.objects is None and not ctx.kube.pvc_exists(owner.namespace, spec.claim_name):
        message = (
            f"PersistentVolumeClaim {spec.claim_name!r} not found in namespace "
            f"{owner.namespace!r}; backups cannot run until it exists"
        )
        _not_ready(ctx, body, owner, "PersistentVolumeClaimNotFound", message)
        raise MissingReference("PersistentVolumeClaimNotFound", message)
    written = ctx.kube.update_status(
        owner.namespace,
        owner.name,
        lambda st, _b: status.reconciled(st, spec, name, owner.generation, _now()),
        known=body,
    )
    was = (status.condition(written[0], status.READY) or {}) if written else {}
    if was.get("status") == "False":
        # a recovery is news; the first Ready of a new resource is not worth an API write
        announce_transition(
            ctx,
            body,
            written,
            status.READY,
            "Normal",
            "Reconciled",
            f"CronJob {name} is up to date ({was.get('reason')} resolved)",
        )
    log.info(
        "reconciled",
        extra={
            "event": "backup.reconciled",
            "namespace": owner.namespace,
            "resource": owner.name,
            "generation": owner.generation,
        },
    )
