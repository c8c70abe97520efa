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


def test_the_client_of_the_servers_own_major_is_chosen(tmp_path: Path) -> None:
    clients = installed_clients(_clients(tmp_path, [14, 18, 16, 15, 17]))
    assert [c.major for c in clients] == [14, 15, 16, 17, 18]
    for major in (14, 15, 16, 17, 18):
        assert choose_client(clients, major).major == major


def test_without_the_servers_major_the_closest_newer_client_is_chosen(tmp_path: Path) -> None:
    """A 13 server gets pg_dump 14, not 18: what 18 writes a 13 server cannot restore."""
    clients = installed_clients(_clients(tmp_path, [14, 17, 15, 18]))
    assert [c.major for c in clients] == [14, 15, 17, 18]
    assert choose_client(clients, 13).major == 14
    assert choose_client(clients, 16).major == 17
    assert choose_client(clients, 12).major == 14


def test_a_restore_needs_a_client_as_new_as_the_one_that_wrote_the_archive(
    tmp_path: Path,
) -> None:
    clients = installed_clients(_clients(tmp_path, [14, 16, 18]))
    assert choose_client(clients, 14, at_least=16).major == 16
    assert choose_client(clients, 16, at_least=14).major == 16
    with pytest.raises(VersionMismatch, match="written by pg_dump 19"):
        choose_client(clients, 14, at_least=19)


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
