"""learnops-dump run against a real PostgreSQL: formats, manifest, termination message."""

from __future__ import annotations

import json

import pytest

from tests.support.dump import DumpWorld, ProcSampler, files_containing, run_runner, url_of


def _manifests(world: DumpWorld) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(world.storage.glob("t-*.manifest.json"))]


@pytest.mark.parametrize(
    ("fmt", "compression", "suffix"),
    [
        ("custom", "zstd:3", ".dump.zst"),
        ("custom", "gzip:1", ".dump"),
        ("custom", "lz4", ".dump.lz4"),
        ("custom", "none", ".dump"),
        ("plain", "zstd:1", ".sql.zst"),
        ("plain", "gzip", ".sql.gz"),
        ("plain", "none", ".sql"),
        ("directory", "gzip:1", ".dir"),
    ],
)
def test_a_backup_in_each_format_is_verified_and_recorded(
    dump_world: DumpWorld, fmt: str, compression: str, suffix: str
) -> None:
    env = dump_world.env(BACKUP_FORMAT=fmt, BACKUP_COMPRESSION=compression)
    with ProcSampler(dump_world.secrets()) as sampler:
        result = run_runner(env)
    assert result.returncode == 0, result.stderr
    (manifest,) = _manifests(dump_world)
    assert manifest["status"] == "ok"
    artifact = str(manifest["artifact"])
    assert artifact.endswith(suffix)
    assert (dump_world.storage / artifact).exists()
    assert json.loads((dump_world.storage / "t.latest.json").read_text())["artifact"] == artifact
    term = json.loads(dump_world.termlog.read_text())
    assert term["status"] == "ok"
    assert term["exitCode"] == 0
    assert term["sha256"] == manifest["sha256"]
    assert term["serverVersion"].startswith("15.")
    assert all(s["exitCode"] == 0 for s in manifest["stages"])  # type: ignore[attr-defined]
    # canary
    assert sampler.samples > 0
    assert sampler.hits == []
    assert not any(s in result.stdout + result.stderr for s in dump_world.secrets())
    assert files_containing(dump_world.storage, dump_world.secrets()) == []
    assert not any(s in dump_world.termlog.read_text() for s in dump_world.secrets())
    assert list(dump_world.tmp.iterdir()) == []


def test_a_url_source_works_and_only_its_name_is_logged(dump_world: DumpWorld) -> None:
    env = dump_world.env(PGPASSFILE="", DATABASE_URL=url_of(dump_world.conn))
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    assert '"source":"DATABASE_URL"' in result.stderr
    assert not any(s in result.stderr for s in dump_world.secrets())


def test_retention_prunes_only_after_a_success_and_keeps_the_newest(dump_world: DumpWorld) -> None:
    env = dump_world.env(BACKUP_RETENTION="last=1,daily=0,weekly=0,monthly=0")
    assert run_runner(env).returncode == 0
    first = json.loads((dump_world.storage / "t.latest.json").read_text())["artifact"]
    failed = run_runner({**env, "PGDATABASE": "no_such_database"})
    assert failed.returncode == 3
    assert (dump_world.storage / first).exists()  # a failure prunes nothing
    assert run_runner(env).returncode == 0
    second = json.loads((dump_world.storage / "t.latest.json").read_text())["artifact"]
    assert second != first
    assert not (dump_world.storage / first).exists()
    assert (dump_world.storage / second).exists()
    statuses = sorted(str(m["status"]) for m in _manifests(dump_world))
    assert statuses == ["failed", "ok"]  # the young failure stays, the old success went


def test_the_runner_makes_its_storage_subdirectory_itself_and_writes_only_there(
    dump_world: DumpWorld,
) -> None:
    env = dump_world.env(BACKUP_STORAGE_SUBDIR="team-a/nightly")
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    made = dump_world.storage / "team-a" / "nightly"
    assert made.is_dir()
    assert made.stat().st_mode & 0o777 == 0o750
    assert json.loads((made / "t.latest.json").read_text())["artifact"]
    assert sorted(p.name for p in dump_world.storage.iterdir()) == ["team-a"]


def test_a_missing_storage_root_is_not_created_even_with_a_subdirectory(
    dump_world: DumpWorld,
) -> None:
    env = dump_world.env(
        BACKUP_STORAGE_ROOT=str(dump_world.storage / "not-mounted"), BACKUP_STORAGE_SUBDIR="a"
    )
    result = run_runner(env)
    assert result.returncode == 6, result.stderr
    assert not (dump_world.storage / "not-mounted").exists()
    assert json.loads(dump_world.termlog.read_text())["reason"] == "StorageError"
