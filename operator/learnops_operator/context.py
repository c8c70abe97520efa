"""What every handler needs, passed as kopf's `memo`: settings, the API, and in-memory indices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learnops_operator.diffbase import MemoryDiffBase
from learnops_operator.kube import Kube
from learnops_operator.ours import Key as Key  # re-exported: the mirror is keyed by it
from learnops_operator.policy import PodPolicy
from learnops_operator.settings import Settings


@dataclass
class Context:
    """Shared by all handlers (kopf copies the memo shallowly, so these dicts are shared too).

    `backups` mirrors the DatabaseBackups from the watch stream, so the periodic sweep and the
    CronJob drift handler need no API reads to know the desired state. `diffbase` is kopf's
    last handled configuration per DatabaseBackup (see diffbase.py).
    """

    settings: Settings
    kube: Kube
    policy: PodPolicy = field(init=False)
    """The pod bounds from `settings`, built once."""
    backups: dict[Key, dict[str, Any]] = field(default_factory=dict)
    restores: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """DatabaseRestores from their watch stream (restores.py)."""
    workers: set[Key] = field(default_factory=set)
    diffbase: MemoryDiffBase = field(default_factory=MemoryDiffBase)
    cronjobs: dict[Key, str] = field(default_factory=dict)
    """uid of each CronJob a mirrored DatabaseBackup controls: scheduled Jobs are owned by it."""
    warned: set[str] = field(default_factory=set)
    """uids of Jobs already reported as not ours (one Warning each, never a storm)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.policy = PodPolicy(
            default_image=s.dump_image,
            allowed_images=s.allowed_dump_images,
            allowed_priority_classes=s.allowed_priority_classes,
            max_resources=dict(s.dump_max_resources),
        )
