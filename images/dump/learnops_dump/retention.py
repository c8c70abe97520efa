"""Grandfather-father-son pruning over successful backups only.

Runs only after a successful run. The newest successful backup always
survives, whatever the rules say; failed manifests go by age alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .settings import Retention
from .storage import MANIFEST_SUFFIX, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One manifest in the storage directory."""

    manifest: str
    artifact: str | None
    ok: bool
    finished: datetime


def keep_set(backups: list[Entry], rules: Retention) -> set[str]:
    """Manifest names of the successful backups the rules keep (newest always)."""
    good = sorted((b for b in backups if b.ok), key=lambda b: b.finished, reverse=True)
    keep = {b.manifest for b in good[: max(1, rules.last)]}
    for count, bucket in (
        (rules.daily, lambda d: d.date().isoformat()),
        (rules.weekly, lambda d: f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}"),
        (rules.monthly, lambda d: f"{d.year}-{d.month:02d}"),
    ):
        seen: set[str] = set()
        for b in good:  # newest first: the first backup seen per period represents it
            key = bucket(b.finished)
            if key not in seen and len(seen) < count:
                seen.add(key)
                keep.add(b.manifest)
    return keep


def expired_failures(entries: list[Entry], now: datetime, max_age_days: int) -> list[Entry]:
    cutoff = now - timedelta(days=max_age_days)
    return [e for e in entries if not e.ok and e.finished < cutoff]


def load_entries(storage: Storage, prefix: str) -> list[Entry]:
    """Manifests of this prefix; unreadable ones are left alone (never pruned)."""
    entries = []
    # Exactly our names: prefix "nightly" must never touch "nightly-eu-...".
    ours = re.compile(rf"{re.escape(prefix)}-\d{{8}}T\d{{6}}Z(-\d+)?{re.escape(MANIFEST_SUFFIX)}")
    for path in storage.root.iterdir():
        if not ours.fullmatch(path.name):
            continue
        data = storage.read_json(path.name)
        if data is None or data.get("status") not in {"ok", "failed"}:
            continue
        try:
            finished = datetime.fromisoformat(str(data["finishedAt"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        artifact = data.get("artifact")
        entries.append(
            Entry(
                manifest=path.name,
                artifact=artifact if isinstance(artifact, str) and artifact else None,
                ok=data["status"] == "ok",
                finished=finished,
            )
        )
    return entries


def prune(
    storage: Storage, prefix: str, rules: Retention, failed_days: int, now: datetime
) -> list[str]:
    """Delete what the rules do not keep; returns the removed names."""
    entries = load_entries(storage, prefix)
    keep = keep_set(entries, rules)
    doomed = [e for e in entries if e.ok and e.manifest not in keep]
    doomed += expired_failures(entries, now, failed_days)
    removed: list[str] = []
    for entry in doomed:
        # The artifact first: a manifest without its artifact would be re-pruned next time,
        # an artifact without its manifest would be orphaned.
        for name in filter(None, (entry.artifact if entry.ok else None, entry.manifest)):
            if "/" in name or name.startswith("."):
                continue  # never follow a name out of the storage directory
            try:
                storage.remove(name)
                removed.append(name)
            except OSError as exc:
                log.warning(
                    "could not prune",
                    extra={"event": "retention.error", "name": name, "error": exc.strerror},
                )
    if removed:
        log.info("pruned old backups", extra={"event": "retention.pruned", "names": removed})
    return removed
