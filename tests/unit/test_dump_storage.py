"""Runs sharing one storage root: reserved names, planted links, their own clean-up only."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from learnops_dump.errors import StorageFailed
from learnops_dump.storage import Reservation, Storage

STARTED = datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)
PLACEHOLDER = {"status": "running", "startedAt": "2026-11-30T03:00:00.000000Z"}


def _reserve(root: Path, prefix: str = "t") -> tuple[Storage, Reservation]:
    storage = Storage(root, prefix)
    storage.open()
    with storage.locked(lambda: None):
        storage.clean_dead_runs(STARTED)
        return storage, storage.reserve(STARTED, PLACEHOLDER)


def _ok(res: Reservation, artifact: str) -> dict[str, object]:
    return {
        "status": "ok",
        "artifact": artifact,
        "finishedAt": "2026-11-30T03:00:05.000000Z",
        "sha256": "0" * 64,
    }


def test_two_runs_in_the_same_second_get_distinct_names_reserved_before_any_artifact(
    tmp_path: Path,
) -> None:
    first_storage, first = _reserve(tmp_path)
    second_storage, second = _reserve(tmp_path)
    assert (first.stem, second.stem) == ("t-20261130T030000Z", "t-20261130T030000Z-1")
    for res in (first, second):
        assert json.loads((tmp_path / res.manifest).read_text())["status"] == "running"
    # the first run's temporary files survive the second run's clean-up
    (tmp_path / f".tmp-{first.stem}.dump").write_bytes(b"dumping")
    _, third = _reserve(tmp_path)
    assert (tmp_path / f".tmp-{first.stem}.dump").read_bytes() == b"dumping"
    assert third.stem == "t-20261130T030000Z-2"
    for storage, res in ((first_storage, first), (second_storage, second)):
        storage.release(res)


def test_a_planted_symlink_at_a_temp_name_never_redirects_a_write(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    stem = "t-20261130T030000Z"
    for name in (
        f".tmp-{stem}.manifest.json",
        f".tmp-{stem}.latest.json",
        f".tmp-{stem}.dump.zst",
        ".tmp-t.latest.json",
    ):
        (root / name).symlink_to(outside / name)
    storage, res = _reserve(root)
    assert res.stem == stem
    fd = storage.create(f".tmp-{stem}.dump.zst", replace_planted=True)
    os.write(fd, b"data")
    os.close(fd)
    storage.commit(f"{stem}.dump.zst")
    storage.finish(res, _ok(res, f"{stem}.dump.zst"))
    assert storage.point_latest(res, _ok(res, f"{stem}.dump.zst"))
    storage.write_json("t.latest.json", _ok(res, f"{stem}.dump.zst"))
    storage.release(res)
    assert list(outside.iterdir()) == []
    assert (root / f"{stem}.dump.zst").read_bytes() == b"data"
    assert not any(p.is_symlink() for p in root.iterdir())


def test_a_symlink_at_the_lock_or_a_final_name_fails_the_run_without_following_it(
    tmp_path: Path,
) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / ".t.lock").symlink_to(target)
    storage = Storage(tmp_path, "t")
    with pytest.raises(StorageFailed), storage.locked(lambda: None):
        pass
    (tmp_path / ".t.lock").unlink()
    storage, res = _reserve(tmp_path)
    os.close(storage.create(f".tmp-{res.stem}.dump"))
    (tmp_path / f"{res.stem}.dump").symlink_to(target)
    with pytest.raises(StorageFailed, match="already exists"):
        storage.commit(f"{res.stem}.dump")
    assert not target.exists()
    storage.release(res)


def test_clean_up_removes_only_dead_runs_of_its_own_prefix(tmp_path: Path) -> None:
    dead = "t-20200101T000000Z"
    (tmp_path / f"{dead}.manifest.json").write_text(json.dumps(PLACEHOLDER))
    (tmp_path / f".tmp-{dead}.dump.zst").write_bytes(b"partial")
    (tmp_path / f".tmp-{dead}.manifest.json").write_bytes(b"")
    other = ".tmp-t-eu-20200101T000000Z.dump.zst"  # another prefix's run
    (tmp_path / other).write_bytes(b"theirs")
    foreign = ".tmp-something-else"
    (tmp_path / foreign).write_bytes(b"not ours")
    storage, res = _reserve(tmp_path)
    assert not (tmp_path / f".tmp-{dead}.dump.zst").exists()
    record = json.loads((tmp_path / f"{dead}.manifest.json").read_text())
    assert record["status"] == "failed"
    assert "ended before it finished" in record["message"]
    assert (tmp_path / other).read_bytes() == b"theirs"
    assert (tmp_path / foreign).read_bytes() == b"not ours"
    storage.release(res)


def test_an_artifact_left_without_a_manifest_gets_a_failed_one(tmp_path: Path) -> None:
    """What an inode exhaustion used to leave: a final name and no manifest."""
    orphan = "t-20200101T000000Z.dump.zst"
    (tmp_path / orphan).write_bytes(b"x")
    storage, res = _reserve(tmp_path)
    record = json.loads((tmp_path / "t-20200101T000000Z.manifest.json").read_text())
    assert record["status"] == "failed"
    assert record["orphanArtifact"] == orphan
    assert record["finishedAt"].endswith("Z")
    storage.release(res)


def test_the_latest_pointer_is_per_prefix_and_never_goes_back_to_an_older_run(
    tmp_path: Path,
) -> None:
    a_storage, older = _reserve(tmp_path)
    b_storage, newer = _reserve(tmp_path)
    eu_storage, eu = _reserve(tmp_path, "t-eu")
    for storage, res in ((b_storage, newer), (a_storage, older), (eu_storage, eu)):
        name = f"{res.stem}.dump"
        os.close(storage.create(f".tmp-{name}"))
        storage.commit(name)
        storage.finish(res, _ok(res, name))
        with storage.locked(lambda: None):
            storage.point_latest(res, _ok(res, name))
    # the newer run finished first; the older one finishing later does not displace it
    assert json.loads((tmp_path / "t.latest.json").read_text())["artifact"] == (
        f"{newer.stem}.dump"
    )
    assert json.loads((tmp_path / "t-eu.latest.json").read_text())["artifact"] == (
        f"{eu.stem}.dump"
    )
    assert not (tmp_path / "latest.json").exists()
    for storage, res in ((a_storage, older), (b_storage, newer), (eu_storage, eu)):
        storage.release(res)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
