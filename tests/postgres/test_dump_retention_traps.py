"""Real runs next to manifests retention must not trust: the backup just written survives."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.dump import DumpWorld, run_runner

LAST_ONE = "last=1,daily=0,weekly=0,monthly=0"


def _plant(storage: Path, stem: str, finished: str, artifact: str) -> None:
    if "/" not in artifact and not (storage / artifact).exists():
        (storage / artifact).write_bytes(b"an older backup")
    (storage / f"{stem}.manifest.json").write_text(
        json.dumps({"status": "ok", "artifact": artifact, "finishedAt": finished})
    )


def _run(world: DumpWorld) -> dict[str, object]:
    result = run_runner(world.env(BACKUP_RETENTION=LAST_ONE))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    latest: dict[str, object] = json.loads((world.storage / "t.latest.json").read_text())
    assert (world.storage / str(latest["artifact"])).exists()
    manifest = json.loads(
        (world.storage / str(latest["artifact"]).replace(".dump.zst", ".manifest.json")).read_text()
    )
    assert manifest["status"] == "ok"
    return dict(manifest)


def test_a_manifest_without_a_time_zone_is_a_warning_not_a_traceback(dump_world: DumpWorld) -> None:
    _plant(
        dump_world.storage, "t-20261101T030000Z", "2026-11-01T03:00:00", "t-20261101T030000Z.dump"
    )
    manifest = _run(dump_world)
    assert any("without a time zone" in w for w in manifest["warnings"])  # type: ignore[attr-defined]
    assert (dump_world.storage / "t-20261101T030000Z.dump").exists()


def test_a_future_dated_manifest_with_keep_last_1_never_deletes_the_new_backup(
    dump_world: DumpWorld,
) -> None:
    _plant(
        dump_world.storage, "t-20991231T000000Z", "2099-12-31T00:00:00Z", "t-20991231T000000Z.dump"
    )
    manifest = _run(dump_world)
    assert any("in the future" in w for w in manifest["warnings"])  # type: ignore[attr-defined]
    second = _run(dump_world)  # and the next run prunes the first, never itself
    assert second["artifact"] != manifest["artifact"]
    assert not (dump_world.storage / str(manifest["artifact"])).exists()
    assert (dump_world.storage / "t-20991231T000000Z.dump").exists()


def test_a_manifest_naming_another_prefixes_artifact_never_deletes_it(
    dump_world: DumpWorld,
) -> None:
    theirs = "t-eu-20261101T030000Z.dump.zst"
    (dump_world.storage / theirs).write_bytes(b"their backup")
    _plant(dump_world.storage, "t-20261101T030000Z", "2026-11-01T03:00:00Z", theirs)
    manifest = _run(dump_world)
    assert (dump_world.storage / theirs).read_bytes() == b"their backup"
    assert any("not its own" in w for w in manifest["warnings"])  # type: ignore[attr-defined]
