"""GFS retention over successful backups; the newest good one always survives."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from learnops_dump.retention import Entry, keep_set, prune
from learnops_dump.settings import Retention
from learnops_dump.storage import Storage

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _daily(days: int, ok: bool = True) -> list[Entry]:
    return [
        Entry(f"b-{d:03d}.manifest.json", f"b-{d:03d}.dump", ok, NOW - timedelta(days=d))
        for d in range(days)
    ]


def test_last_keeps_the_newest_n() -> None:
    keep = keep_set(_daily(10), Retention(last=3, daily=0, weekly=0, monthly=0))
    assert keep == {"b-000.manifest.json", "b-001.manifest.json", "b-002.manifest.json"}


def test_gfs_keeps_one_per_day_week_and_month() -> None:
    keep = keep_set(_daily(120), Retention(last=1, daily=7, weekly=4, monthly=3))
    days = sorted(int(n[2:5]) for n in keep)
    assert days[:7] == list(range(7))  # the last 7 days
    assert len(keep) <= 1 + 7 + 4 + 3
    months = {(NOW - timedelta(days=d)).strftime("%Y-%m") for d in days}
    assert {"2026-11", "2026-10", "2026-09"} <= months


def test_failed_backups_never_count_and_the_newest_good_one_survives() -> None:
    entries = [
        *_daily(5, ok=False),
        Entry("old.manifest.json", "old.dump", True, NOW - timedelta(days=400)),
    ]
    keep = keep_set(entries, Retention(last=0, daily=0, weekly=0, monthly=0))
    assert keep == {"old.manifest.json"}


def _write(storage: Path, stem: str, ok: bool, finished: datetime) -> None:
    artifact = f"{stem}.dump" if ok else None
    if artifact:
        (storage / artifact).write_bytes(b"x")
    (storage / f"{stem}.manifest.json").write_text(
        json.dumps(
            {
                "status": "ok" if ok else "failed",
                "artifact": artifact,
                "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        )
    )


def _stem(prefix: str, finished: datetime) -> str:
    return f"{prefix}-{finished:%Y%m%dT%H%M%SZ}"


def test_prune_removes_artifacts_and_manifests_and_old_failures_only(tmp_path: Path) -> None:
    ok = [_stem("t", NOW - timedelta(days=d)) for d in range(5)]
    for d, stem in enumerate(ok):
        _write(tmp_path, stem, True, NOW - timedelta(days=d))
    fail_new = _stem("t", NOW - timedelta(days=1, hours=1))
    fail_old = _stem("t", NOW - timedelta(days=30))
    _write(tmp_path, fail_new, False, NOW - timedelta(days=1, hours=1))
    _write(tmp_path, fail_old, False, NOW - timedelta(days=30))
    other = _stem("t-eu", NOW - timedelta(days=90))  # another prefix sharing the directory
    _write(tmp_path, other, True, NOW - timedelta(days=90))
    unreadable = _stem("t", NOW - timedelta(days=60)) + ".manifest.json"
    (tmp_path / unreadable).write_text("{not json")
    removed, _ = prune(
        Storage(tmp_path, "t"), Retention(last=2, daily=0, weekly=0, monthly=0), 14, NOW
    )
    assert sorted(removed) == sorted(
        [
            *(f"{stem}.dump" for stem in ok[2:]),
            *(f"{stem}.manifest.json" for stem in ok[2:]),
            f"{fail_old}.manifest.json",
        ]
    )
    left = {p.name for p in tmp_path.iterdir()}
    assert {f"{fail_new}.manifest.json", f"{other}.dump", unreadable} <= left


def _manifest(storage: Path, stem: str, finished: str, artifact: str | None = None) -> str:
    artifact = artifact or f"{stem}.dump"
    if "/" not in artifact:
        (storage / artifact).write_bytes(b"x")
    (storage / f"{stem}.manifest.json").write_text(
        json.dumps({"status": "ok", "artifact": artifact, "finishedAt": finished})
    )
    return artifact


LAST_ONE = Retention(last=1, daily=0, weekly=0, monthly=0)


def test_a_manifest_without_a_time_zone_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    naive = _manifest(tmp_path, "t-20261101T030000Z", "2026-11-01T03:00:00")
    new = _manifest(tmp_path, _stem("t", NOW), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    removed, warnings = prune(Storage(tmp_path, "t"), LAST_ONE, 14, NOW, {new})
    assert removed == []
    assert (tmp_path / naive).exists()
    assert any("without a time zone" in w for w in warnings)


def test_a_future_dated_manifest_never_costs_the_backup_just_written(tmp_path: Path) -> None:
    future = _manifest(tmp_path, "t-20991231T000000Z", "2099-12-31T00:00:00Z")
    older = _manifest(tmp_path, _stem("t", NOW - timedelta(days=2)), "2026-11-28T03:00:00Z")
    new = _manifest(tmp_path, _stem("t", NOW), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    removed, warnings = prune(Storage(tmp_path, "t"), LAST_ONE, 14, NOW, {new})
    assert (tmp_path / new).exists()
    assert (tmp_path / future).exists()  # not trusted: neither counted nor deleted
    assert removed == [older, older.replace(".dump", ".manifest.json")]
    assert any("in the future" in w for w in warnings)


def test_the_artifact_latest_names_survives_even_if_the_rules_drop_it(tmp_path: Path) -> None:
    named = _manifest(tmp_path, _stem("t", NOW - timedelta(days=3)), "2026-11-27T03:00:00Z")
    new = _manifest(tmp_path, _stem("t", NOW), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    removed, _ = prune(Storage(tmp_path, "t"), LAST_ONE, 14, NOW, {new, named})
    assert removed == []


def test_a_manifest_naming_another_prefixes_artifact_deletes_nothing(tmp_path: Path) -> None:
    theirs = _manifest(tmp_path, _stem("t-eu", NOW - timedelta(days=9)), "2026-11-21T03:00:00Z")
    for name in (theirs, "../outside.dump", "/etc/passwd"):
        stem = _stem("t", NOW - timedelta(days=5, seconds=len(name)))
        (tmp_path / f"{stem}.manifest.json").write_text(
            json.dumps({"status": "ok", "artifact": name, "finishedAt": "2026-11-25T03:00:00Z"})
        )
    new = _manifest(tmp_path, _stem("t", NOW), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    removed, warnings = prune(Storage(tmp_path, "t"), LAST_ONE, 14, NOW, {new})
    assert removed == []
    assert (tmp_path / theirs).exists()
    assert sum("not its own" in w for w in warnings) == 3


def test_an_error_while_pruning_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    old = _stem("t", NOW - timedelta(days=4))
    (tmp_path / f"{old}.dump").mkdir()  # a directory artifact we cannot delete
    (tmp_path / f"{old}.dump" / "toc.dat").write_bytes(b"x")
    (tmp_path / f"{old}.manifest.json").write_text(
        json.dumps(
            {"status": "ok", "artifact": f"{old}.dump", "finishedAt": "2026-11-26T03:00:00Z"}
        )
    )
    new = _manifest(tmp_path, _stem("t", NOW), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    (tmp_path / f"{old}.dump").chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores the mode: make the removal fail another way
            storage = Storage(tmp_path, "t")
            original = storage.remove

            def refuse(name: str) -> None:
                if name.endswith(".dump") and name != new:
                    raise PermissionError(13, "Permission denied")
                original(name)

            storage.remove = refuse  # type: ignore[method-assign]
        else:
            storage = Storage(tmp_path, "t")
        removed, warnings = prune(storage, LAST_ONE, 14, NOW, {new})
    finally:
        (tmp_path / f"{old}.dump").chmod(0o700)
    assert removed == []
    assert any("cannot remove" in w and "Permission denied" in w for w in warnings)
    assert (tmp_path / f"{old}.manifest.json").exists()  # kept while its artifact is there


def test_a_runs_database_artifacts_and_globals_go_with_it_and_nothing_else(
    tmp_path: Path,
) -> None:
    """Several databases and the globals are `<stem>.<label>...` files: pruned with their run,
    while another prefix's files and a same-looking name of another run stay."""
    old, new = _stem("t", NOW - timedelta(days=3)), _stem("t", NOW)
    keep = [_stem("t-eu", NOW - timedelta(days=9)) + ".app.dump", "t.latest.json"]
    for name in keep:
        (tmp_path / name).write_bytes(b"keep me")
    for stem, days in ((old, 3), (new, 0)):
        parts = [f"{stem}.app.dump", f"{stem}.crm-0123456789.dump.zst"]
        for name in [*parts, f"{stem}.globals.sql", f"{stem}.globals.manifest.json"]:
            (tmp_path / name).write_bytes(b"x")
        manifest = {
            "status": "ok",
            "artifact": None,
            "finishedAt": (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "databases": [{"database": p, "status": "ok", "artifact": p} for p in parts],
            "globals": {"status": "ok", "artifact": f"{stem}.globals.sql"},
        }
        (tmp_path / f"{stem}.manifest.json").write_text(json.dumps(manifest))
    removed, warnings = prune(Storage(tmp_path, "t"), LAST_ONE, 14, NOW, {f"{new}.app.dump"})
    assert warnings == []
    assert sorted(removed) == sorted(
        [
            f"{old}.app.dump",
            f"{old}.crm-0123456789.dump.zst",
            f"{old}.globals.sql",
            f"{old}.globals.manifest.json",
            f"{old}.manifest.json",
        ]
    )
    left = {p.name for p in tmp_path.iterdir()}
    assert {*keep, f"{new}.app.dump", f"{new}.globals.sql", f"{new}.manifest.json"} <= left
