"""What every handler needs, passed as kopf's `memo`: settings, the API, and in-memory indices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learnops_operator.diffbase import MemoryDiffBase
from learnops_operator.kube import Kube
from learnops_operator.settings import Settings

Key = tuple[str, str]


@dataclass
class Context:
    """Shared by all handlers (kopf copies the memo shallowly, so these dicts are shared too).

    `backups` mirrors the DatabaseBackups from the watch stream, so the periodic sweep and the
    CronJob drift handler need no API reads to know the desired state. `diffbase` is kopf's
    last handled configuration per DatabaseBackup (see diffbase.py).
    """

    settings: Settings
    kube: Kube
    backups: dict[Key, dict[str, Any]] = field(default_factory=dict)
    restores: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """DatabaseRestores from their watch stream (restores.py)."""
    workers: set[Key] = field(default_factory=set)
    diffbase: MemoryDiffBase = field(default_factory=MemoryDiffBase)
