"""Grandfather-father-son pruning over successful backups only.

Runs only after a successful run, under the prefix lock. It can never destroy the last good
backup: the newest successful one, the one just written and the one `latest` names always
survive, and a manifest it cannot trust (unreadable, no time zone, dated in the future,
naming a file that is not its own) is left alone with a warning instead of being counted or
deleted. Failed manifests go by age alone. Nothing here fails a backup: an error while
pruning becomes a warning in the run's manifest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import artifacts
from .artifacts import MANIFEST_SUFFIX
from .settings import Retention
from .storage import Storage

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


def _finished(value: object) -> datetime | str:
    """The zone-aware time, or a reason why not."""
    if not isinstance(value, str):
        return "has no finishedAt"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "has an unreadable finishedAt"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "has a finishedAt without a time zone"
    return moment


def load_entries(storage: Storage, now: datetime, warnings: list[str] | None = None) -> list[Entry]:
    """Manifests of this prefix that retention may act on; the others are left alone."""
    warnings = [] if warnings is None else warnings
    ours = re.compile(artifacts.stem_pattern(storage.prefix))
    entries = []
    for name in sorted(storage.names()):
        stem = name.removesuffix(MANIFEST_SUFFIX)
        if stem == name or not ours.fullmatch(stem):
            continue
        data = storage.read_json(name)
        if data is None:
            warnings.append(f"retention: {name} is unreadable; left alone")
            continue
        status = data.get("status")
        if status not in {"ok", "failed"}:
            continue  # "running": a live run's reservation, or one clean-up will turn failed
        finished = _finished(data.get("finishedAt"))
        if isinstance(finished, str):
            warnings.append(f"retention: {name} {finished}; left alone")
            continue
        if finished > now:
            warnings.append(f"retention: {name} is dated in the future (clock skew?); left alone")
            continue
        artifact = data.get("artifact")
        several = isinstance(data.get("databases"), list) and artifact is None
        if (
            status == "ok"
            and not several
            and not (isinstance(artifact, str) and artifacts.artifact_of(stem, artifact))
        ):
            warnings.append(f"retention: {name} names an artifact that is not its own; left alone")
            continue
        entries.append(
            Entry(
                manifest=name,
                artifact=artifact if status == "ok" else None,
                ok=status == "ok",
                finished=finished,
            )
        )
    return entries


def prune(
    storage: Storage,
    rules: Retention,
    failed_days: int,
    now: datetime,
    protect: Collection[str] = (),
) -> tuple[list[str], list[str]]:
    """Delete what the rules do not keep; returns (removed names, warnings).

    `protect` names artifacts that survive whatever the rules say (the one just written,
    the one `latest` names)."""
    warnings: list[str] = []
    try:
        names = storage.names()
        entries = load_entries(storage, now, warnings)
    except OSError as exc:
        return [], [f"retention: cannot read the storage root ({exc.strerror or exc})"]
    protected = {parts[0] for parts in map(artifacts.split_name, protect) if parts}
    keep = keep_set(entries, rules)
    doomed = [e for e in entries if e.ok and e.manifest not in keep]
    doomed += expired_failures(entries, now, failed_days)
    removed: list[str] = []
    for entry in doomed:
        stem = entry.manifest.removesuffix(MANIFEST_SUFFIX)
        if stem in protected:
            continue
        # The artifact first: a manifest without its artifact would be re-pruned next time,
        # an artifact without its manifest would be orphaned. A failed run's leftovers (an
        # artifact that lost its manifest) go with its manifest.
        doomed_names = [n for n in names if artifacts.artifact_of(stem, n)]
        for name in [*sorted(doomed_names), entry.manifest]:
            try:
                storage.remove(name)
                removed.append(name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                warnings.append(f"retention: cannot remove {name} ({exc.strerror or exc})")
                break  # keep the manifest while its artifact is still there
    for text in warnings:
        log.warning(text, extra={"event": "retention.warning"})
    if removed:
        log.info("pruned old backups", extra={"event": "retention.pruned", "names": removed})
    return removed, warnings
