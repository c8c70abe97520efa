"""What a DatabaseBackup's author may choose about the backup pod, and within which bounds.

The pod is the operator's design: its security context, service account, host namespaces and
volumes are fixed in builders.py. The author may pick the scheduling fields a backup really
needs (node selector, tolerations, affinity, resources, priority class), annotations outside the
Kubernetes and learnops domains, and an image only from the allow-list the platform team set in
the chart. The CRD rejects most of this at admission already (CEL); this module checks all of it
again, because admission rules do not re-validate objects stored before a rule existed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity

from learnops_operator.spec import BackupSpec

# An image reference: [registry[:port]/]path[:tag][@sha256:digest], lower case path components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?"
IMAGE_PATTERN = re.compile(
    rf"(?P<repo>(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)
DIGEST_PATTERN = re.compile(r"sha256:[a-f0-9]{64}")
MAX_IMAGE_LENGTH = 512

# Keys in these DNS domains steer the kubelet, the runtime or the scheduler (AppArmor, seccomp,
# default container, control-plane roles, taints the node controller sets): never the author's.
RESERVED_DOMAIN = re.compile(r"(?:^|[./])(?:kubernetes\.io|k8s\.io|learnops\.io)/")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
MAX_TOLERATIONS = 8
MAX_TOLERATION_SECONDS = 3600
MAX_NODE_SELECTOR = 16
MAX_ANNOTATIONS = 16
MAX_ANNOTATION_VALUE = 1024
AFFINITY_KINDS = ("nodeAffinity", "podAffinity", "podAntiAffinity")


@dataclass(frozen=True)
class PodPolicy:
    """The platform team's bounds, from the operator's settings (the chart's `dump` values)."""

    default_image: str
    allowed_images: tuple[str, ...] = ()
    """Registry/repository prefixes (`registry.example/team/`) or digests (`sha256:…`)."""
    allowed_priority_classes: tuple[str, ...] = ()
    max_resources: Mapping[str, str] | None = None
    """Upper bound per resource name, for requests and limits alike."""


@dataclass(frozen=True)
class Refusal:
    """Why the pod cannot be built; `reason` is the Ready=False reason."""

    reason: str
    message: str


def image_matches(image: str, entry: str) -> bool:
    """An allow-list entry is a digest, or a repository prefix ending at a path boundary."""
    match = IMAGE_PATTERN.fullmatch(image)
    if match is None:
        return False
    if DIGEST_PATTERN.fullmatch(entry):
        return match.group("digest") == entry
    prefix = entry.rstrip("/")
    repo = match.group("repo")
    return bool(prefix) and (repo == prefix or repo.startswith(prefix + "/"))


def image_for(spec: BackupSpec, policy: PodPolicy) -> str | Refusal:
    """The image the pod runs: the operator's, or the spec's when the allow-list permits it."""
    if spec.image is None or spec.image == policy.default_image:
        return policy.default_image
    image = spec.image
    if len(image) > MAX_IMAGE_LENGTH or IMAGE_PATTERN.fullmatch(image) is None:
        return Refusal("ImageNotAllowed", "spec.image is not a valid image reference")
    if not any(image_matches(image, entry) for entry in policy.allowed_images):
        allowed = ", ".join(policy.allowed_images) or "none: unset spec.image"
        return Refusal(
            "ImageNotAllowed",
            f"spec.image {image!r} is not in the operator's allow-list ({allowed})",
        )
    return image


def _quantity(value: Any) -> Decimal | None:
    try:
        parsed = parse_quantity(value)
    except (ValueError, TypeError, InvalidOperation):
        return None
    return Decimal(parsed)


def _resources(spec: BackupSpec, policy: PodPolicy) -> Refusal | None:
    for kind in spec.resources:
        if kind not in ("requests", "limits"):
            return Refusal("ResourcesNotAllowed", f"spec.resources.{kind} is not supported")
    for kind in ("requests", "limits"):
        for name, value in (spec.resources.get(kind) or {}).items():
            if name not in RESOURCE_NAMES:
                return Refusal(
                    "ResourcesNotAllowed",
                    f"spec.resources.{kind}.{name}: only {', '.join(RESOURCE_NAMES)} are allowed",
                )
            amount = _quantity(value)
            if amount is None or amount < 0:
                return Refusal(
                    "ResourcesNotAllowed", f"spec.resources.{kind}.{name} is not a quantity"
                )
            bound = (policy.max_resources or {}).get(name)
            if bound is not None and amount > (_quantity(bound) or Decimal(0)):
                return Refusal(
                    "ResourcesNotAllowed",
                    f"spec.resources.{kind}.{name} {value} exceeds the operator's bound {bound}",
                )
    return None


def _scheduling(spec: BackupSpec, policy: PodPolicy) -> Refusal | None:
    if len(spec.node_selector) > MAX_NODE_SELECTOR:
        return Refusal("SchedulingNotAllowed", f"at most {MAX_NODE_SELECTOR} nodeSelector labels")
    for key in spec.node_selector:
        if key.startswith(("node-role.kubernetes.io/", "node-restriction.kubernetes.io/")):
            return Refusal(
                "SchedulingNotAllowed", f"nodeSelector {key!r} would select control-plane nodes"
            )
    if len(spec.tolerations) > MAX_TOLERATIONS:
        return Refusal("SchedulingNotAllowed", f"at most {MAX_TOLERATIONS} tolerations")
    for toleration in spec.tolerations:
        key = str(toleration.get("key") or "")
        if not key:
            return Refusal(
                "SchedulingNotAllowed",
                "a toleration needs a key (an empty key tolerates every taint)",
            )
        if RESERVED_DOMAIN.search(key):
            return Refusal(
                "SchedulingNotAllowed",
                f"toleration {key!r}: taints in the Kubernetes domains (control plane, node "
                "conditions) cannot be tolerated",
            )
        seconds = toleration.get("tolerationSeconds")
        if seconds is not None and not (
            isinstance(seconds, int) and 0 <= seconds <= MAX_TOLERATION_SECONDS
        ):
            return Refusal(
                "SchedulingNotAllowed", f"tolerationSeconds must be 0..{MAX_TOLERATION_SECONDS}"
            )
    for kind in spec.affinity or {}:
        if kind not in AFFINITY_KINDS:
            return Refusal("SchedulingNotAllowed", f"affinity.{kind} is not supported")
    if spec.priority_class_name is not None and (
        spec.priority_class_name not in policy.allowed_priority_classes
    ):
        allowed = ", ".join(policy.allowed_priority_classes) or "none"
        return Refusal(
            "PriorityClassNotAllowed",
            f"priorityClassName {spec.priority_class_name!r} is not allowed (allowed: {allowed})",
        )
    return None


def _annotations(spec: BackupSpec) -> Refusal | None:
    if len(spec.pod_annotations) > MAX_ANNOTATIONS:
        return Refusal("AnnotationsNotAllowed", f"at most {MAX_ANNOTATIONS} podAnnotations")
    for key, value in spec.pod_annotations.items():
        if RESERVED_DOMAIN.search(key):
            return Refusal(
                "AnnotationsNotAllowed",
                f"podAnnotations {key!r}: keys in the kubernetes.io, k8s.io and learnops.io "
                "domains are reserved (they steer the kubelet and the runtime, e.g. AppArmor)",
            )
        if len(str(value)) > MAX_ANNOTATION_VALUE:
            return Refusal(
                "AnnotationsNotAllowed", f"podAnnotations {key!r} is longer than 1024 characters"
            )
    return None


def check(spec: BackupSpec, policy: PodPolicy) -> str | Refusal:
    """The image to run, or the first reason the spec's pod fields are refused."""
    if spec.service_account_name is not None:
        return Refusal(
            "ServiceAccountNotAllowed",
            "serviceAccountName is not supported: backup pods run as the namespace's default "
            "ServiceAccount, without a token",
        )
    for refusal in (_resources(spec, policy), _scheduling(spec, policy), _annotations(spec)):
        if refusal is not None:
            return refusal
    return image_for(spec, policy)
