"""Client picking and the compression plan per pg_dump major."""

from __future__ import annotations

from pathlib import Path

import pytest
from learnops_dump.errors import ConfigError, VersionMismatch
from learnops_dump.pipeline import make_plan
from learnops_dump.settings import Compression, DumpFormat
from learnops_dump.versions import choose_client, installed_clients


def _clients(tmp_path: Path, majors: list[int]) -> str:
    # Fake bin dirs: only one real client (15) can exist on this machine.
    for m in majors:
        bindir = tmp_path / str(m) / "bin"
        bindir.mkdir(parents=True)
        (bindir / "pg_dump").write_text("#!/bin/sh\n")
    (tmp_path / "notamajor" / "bin").mkdir(parents=True)
    (tmp_path / "notamajor" / "bin" / "pg_dump").write_text("")
    return str(tmp_path / "*" / "bin")


def test_the_newest_client_is_chosen_when_it_covers_the_server(tmp_path: Path) -> None:
    clients = installed_clients(_clients(tmp_path, [13, 17, 15]))
    assert [c.major for c in clients] == [13, 15, 17]
    assert choose_client(clients, 15).major == 17
    assert choose_client(clients, 17).major == 17


def test_a_server_newer_than_every_client_names_both_versions(tmp_path: Path) -> None:
    clients = installed_clients(_clients(tmp_path, [14, 15]))
    with pytest.raises(VersionMismatch, match=r"server major 18 .*newest 15"):
        choose_client(clients, 18)


def test_no_client_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        choose_client([], 15)


def test_the_real_client_is_found() -> None:
    assert 15 in [c.major for c in installed_clients("/usr/lib/postgresql/*/bin")]


@pytest.mark.parametrize(
    ("fmt", "comp", "major", "z", "external", "ext"),
    [
        (DumpFormat.CUSTOM, "gzip:5", 15, "5", None, ".dump"),
        (DumpFormat.CUSTOM, "gzip:5", 16, "gzip:5", None, ".dump"),
        (DumpFormat.CUSTOM, "zstd:3", 15, "0", "zstd", ".dump.zst"),
        (DumpFormat.CUSTOM, "zstd:3", 17, "zstd:3", None, ".dump"),
        (DumpFormat.PLAIN, "lz4:1", 15, "0", "lz4", ".sql.lz4"),
        (DumpFormat.PLAIN, "lz4:1", 16, "lz4:1", None, ".sql.lz4"),
        (DumpFormat.PLAIN, "gzip:1", 15, "1", None, ".sql.gz"),
        (DumpFormat.DIRECTORY, "none", 15, "0", None, ".dir"),
        (DumpFormat.DIRECTORY, "zstd:3", 16, "zstd:3", None, ".dir"),
    ],
)
def test_native_compression_where_pg_dump_has_it_else_an_external_stage(
    fmt: DumpFormat, comp: str, major: int, z: str, external: str | None, ext: str
) -> None:
    plan = make_plan(fmt, Compression.parse(comp), major)
    assert plan.dump_args[plan.dump_args.index("-Z") + 1] == z
    assert (plan.compressor[0] if plan.compressor else None) == external
    assert plan.extension == ext


def test_directory_format_cannot_take_an_external_compressor() -> None:
    with pytest.raises(ConfigError, match="directory"):
        make_plan(DumpFormat.DIRECTORY, Compression.parse("zstd:3"), 15)
