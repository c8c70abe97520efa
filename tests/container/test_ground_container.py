"""Smoke tests for the container engine: images run the way a restricted pod runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.containers import Engine

SMOKE = Path(__file__).with_name("smoke")
FS_GROUP = 2000


@pytest.fixture(scope="module")
def smoke_image(container_engine: Engine) -> str:
    return container_engine.build("learnops-smoke:test", SMOKE / "Dockerfile", SMOKE)


def test_a_built_container_runs_non_root_with_a_read_only_root(
    container_engine: Engine, smoke_image: str
) -> None:
    ran = container_engine.run(
        smoke_image, ["id -u; id -G; touch /should-fail; echo scratch > /tmp/ok && cat /tmp/ok"],
        group_add=[FS_GROUP],
    )  # fmt: skip
    lines = ran.stdout.split()
    assert lines[0] == "65532"
    assert str(FS_GROUP) in ran.stdout
    assert "Read-only file system" in ran.stderr
    assert lines[-1] == "scratch"


def test_a_container_over_its_memory_limit_is_killed(
    container_engine: Engine, smoke_image: str
) -> None:
    limit = container_engine.run(smoke_image, ["cat /sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert limit.stdout.strip() == str(64 * 2**20)
    # tail buffers a whole "line" of 200 MB of zero bytes: far above the 64 MiB limit.
    ran = container_engine.run(smoke_image, ["head -c 200000000 /dev/zero | tail -n 1 >/dev/null"])
    assert ran.returncode == 137  # SIGKILL from the OOM killer


def test_a_secret_volume_has_the_kubelet_layout_and_is_readable_by_the_fs_group(
    container_engine: Engine, smoke_image: str
) -> None:
    vol = container_engine.secret_volume({"pgpass": "h:1:d:u:pw\\n"}, fs_group=FS_GROUP)
    assert (vol / "..data").is_symlink()
    assert (vol / "pgpass").resolve().stat().st_uid == 0
    script = "stat -L -c '%u %g %a' /secret/pgpass; cat /secret/pgpass"
    ran = container_engine.run(
        smoke_image, [script], group_add=[FS_GROUP], mounts=[(vol, "/secret", True)]
    )
    owner, group, mode = ran.stdout.splitlines()[0].split()
    assert (owner, group) == ("0", str(FS_GROUP))
    assert int(mode, 8) & 0o040  # group-readable: what libpq refuses for a pgpass file
    assert "h:1:d:u:pw" in ran.stdout
