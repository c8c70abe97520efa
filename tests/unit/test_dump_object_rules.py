"""Part sizes, bucket names, age recipients and object-storage settings of the dump runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from learnops_dump.artifacts import Artifact, split_name
from learnops_dump.buckets import StorageKind, bucket_name_problem
from learnops_dump.encryption import encrypt_argv, fingerprint, parse_recipients
from learnops_dump.errors import ConfigError
from learnops_dump.partsize import (
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    MiB,
    capacity,
    objects_for,
    part_size,
)
from learnops_dump.pipeline import make_plan
from learnops_dump.settings import Compression, DumpFormat, Settings

GB, TB = 10**9, 10**12
RECIPIENT = "age1tv4pvfx5eddkcpklpfyzt2p00sxt00nuuh9cs32zudk4wv7x432qqlfjq6"


@pytest.mark.parametrize("expected", [1 * GB, 100 * GB, 5 * TB])
def test_the_part_size_is_bounded_and_any_expected_size_fits_in_the_part_limit(
    expected: int,
) -> None:
    part = part_size(expected)
    assert part % MiB == 0
    assert MIN_PART <= part <= MAX_PART
    assert 10 * MiB >= MAX_PART  # memory: measured 56 MiB peak at 12 MiB parts, segmented
    # every object stays inside S3's part limit; the artifact takes as many as it needs
    objects = objects_for(expected, part)
    assert objects * capacity(part) >= expected
    assert -(-expected // objects) <= MAX_PARTS * part
    assert (objects - 1) * capacity(part) < expected or objects == 1


def test_part_sizes_and_object_counts_for_1_gb_100_gb_and_5_tb() -> None:
    assert part_size(1 * GB) == MIN_PART  # small dumps: the 8 MiB floor, one object
    assert objects_for(2 * GB, part_size(1 * GB)) == 1  # room for twice as large
    assert part_size(100 * GB) == MAX_PART  # 2 x 100 GB / 10,000 = 20 MB, capped at 10 MiB
    assert objects_for(100 * GB, MAX_PART) == 1  # 10 MiB x 10,000 = 104.9 GB in one object
    assert objects_for(200 * GB, MAX_PART) == 2  # twice as large: one segment more
    assert part_size(5 * TB) == MAX_PART  # the memory bound, not the size, sets the part
    assert objects_for(5 * TB, MAX_PART) == 48  # 5 TB / 104.9 GB = 47.7: 48 objects
    assert part_size(0) == MIN_PART
    assert part_size(10**15) == MAX_PART
    assert objects_for(0, MIN_PART) == 1  # an empty artifact is still one object


def test_a_store_with_a_lower_part_limit_gets_larger_parts_and_more_objects() -> None:
    assert part_size(1 * GB, parts=1_000) == MIN_PART  # 2 GB / 1,000 = 2 MB -> floor
    assert part_size(45 * GB, parts=10_000) == 9 * MiB  # 2 x 45 GB / 10,000 = 9 MB
    assert part_size(45 * GB, parts=1_000) == MAX_PART
    assert objects_for(5 * TB, MAX_PART, parts=1_000) == 477


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        (StorageKind.S3, "learnops-backups", True),
        (StorageKind.S3, "my.bucket.example", True),
        (StorageKind.S3, "ab", False),
        (StorageKind.S3, "Upper", False),
        (StorageKind.S3, "under_score", False),
        (StorageKind.S3, "a..b", False),
        (StorageKind.S3, "a-.b", False),
        (StorageKind.S3, "192.168.0.1", False),
        (StorageKind.S3, "-leading", False),
        (StorageKind.GCS, "under_score", True),
        (StorageKind.AZURE, "pg-backups", True),
        (StorageKind.AZURE, "pg--backups", False),
        (StorageKind.AZURE, "pg.backups", False),
    ],
)
def test_bucket_names_follow_each_clouds_rules(kind: StorageKind, name: str, ok: bool) -> None:
    assert (bucket_name_problem(kind, name) is None) is ok


def test_recipients_are_parsed_deduplicated_and_fingerprinted_never_echoed() -> None:
    ssh = "ssh-ed25519 " + "A" * 68 + " alice@example"
    parsed = parse_recipients([f"# team keys\n{RECIPIENT}\n\n{RECIPIENT},{ssh}"])
    assert parsed == (RECIPIENT, "ssh-ed25519 " + "A" * 68)
    assert fingerprint(RECIPIENT).startswith("sha256:")
    assert RECIPIENT not in fingerprint(RECIPIENT)
    assert encrypt_argv(parsed)[:2] == ("age", "--encrypt")
    secret = "AGE-SECRET-KEY-1" + "Q" * 58
    with pytest.raises(ConfigError) as info:
        parse_recipients([secret])  # an identity pasted by mistake
    assert secret not in info.value.message


def base_env(**extra: str) -> dict[str, str]:
    return {"PGHOST": "db", "PGDATABASE": "app", "PGUSER": "u", **extra}


def test_object_storage_settings_are_validated_and_name_the_variable() -> None:
    s = Settings.from_env(
        base_env(
            BACKUP_STORAGE_KIND="s3",
            BACKUP_BUCKET="learnops-backups",
            BACKUP_OBJECT_PREFIX="prod/app",
            BACKUP_S3_SSE="aws:kms",
            BACKUP_S3_SSE_KMS_KEY_ID="key-1",
            BACKUP_AGE_RECIPIENTS=RECIPIENT,
        )
    )
    assert s.storage_kind is StorageKind.S3
    assert s.bucket is not None
    assert s.bucket.key("x.dump") == "prod/app/x.dump"
    assert s.age_recipients == (RECIPIENT,)
    for bad, variable in [
        ({"BACKUP_STORAGE_KIND": "ftp"}, "BACKUP_STORAGE_KIND"),
        ({"BACKUP_STORAGE_KIND": "s3"}, "BACKUP_BUCKET"),
        ({"BACKUP_STORAGE_KIND": "s3", "BACKUP_BUCKET": "Bad_Name"}, "BACKUP_BUCKET"),
        (
            {"BACKUP_STORAGE_KIND": "s3", "BACKUP_BUCKET": "abc", "BACKUP_OBJECT_PREFIX": "../x"},
            "BACKUP_OBJECT_PREFIX",
        ),
        ({"BACKUP_STORAGE_KIND": "s3", "BACKUP_BUCKET": "abc", "BACKUP_S3_SSE": "rot13"}, "SSE"),
        ({"BACKUP_AGE_RECIPIENTS": "age1nope"}, "BACKUP_AGE_RECIPIENTS"),
    ]:
        with pytest.raises(ConfigError) as info:
            Settings.from_env(base_env(**bad))
        assert variable in info.value.message


def test_an_encrypted_artifact_is_recognised_by_its_suffix() -> None:
    plan = make_plan(DumpFormat.CUSTOM, Compression("zstd", 3), 15)
    assert plan.extension == ".dump.zst"  # objectrun.py appends .age when it encrypts
    art = Artifact.of(Path("t-20261201T000000Z.dump.zst.age"))
    assert (art.format, art.outer, art.encrypted) == (DumpFormat.CUSTOM, "zstd", True)
    assert Artifact.of(Path("t-20261201T000000Z.sql.age")).encrypted
    assert not Artifact.of(Path("t-20261201T000000Z.dump.zst")).encrypted
    assert split_name("t-20261201T000000Z.dump.zst.age") == ("t-20261201T000000Z", ".dump.zst.age")


def test_the_images_requirements_lock_is_the_uv_export_of_the_dump_package() -> None:
    import shutil
    import subprocess

    uv = shutil.which("uv")
    assert uv is not None
    root = Path(__file__).resolve().parents[2]
    exported = subprocess.run(
        [uv, "export", "--frozen", "--package", "learnops-dump", "--no-dev",
         "--no-emit-workspace", "--no-header", "-q"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert (root / "images/dump/requirements.lock").read_text() == exported
