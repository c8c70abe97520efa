"""The command line documents every setting and exit code; the private pgpass is 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from learnops_dump.cli import parser
from learnops_dump.connection import Target, resolve_target
from learnops_dump.credentials import private_pgpass, split_line
from learnops_dump.declare import declared
from learnops_dump.settings import Settings


def test_help_documents_every_setting_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for d in declared(Settings):
        for name in d.names():
            assert name in out
    for name in ("SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL"):
        assert name in out
    for code in range(1, 9):
        assert f"  {code}  " in out


def test_a_private_copy_of_a_group_readable_pgpass_is_0600_and_removed(tmp_path: Path) -> None:
    secret = tmp_path / "pgpass"
    secret.write_text("# comment\ndb:5432:app:u:pa\\:ss\n")
    secret.chmod(0o440)
    target = Target(passfile=secret)
    with private_pgpass(target, tmp_path) as copy:
        assert copy is not None
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        lines = copy.read_text().splitlines()
        # the original entry first, then the same for any database (scratch verification)
        assert lines == ["db:5432:app:u:pa\\:ss", "db:5432:*:u:pa\\:ss"]
    assert not copy.exists()


def test_a_url_password_goes_only_into_the_private_pgpass(tmp_path: Path) -> None:
    target, _ = resolve_target({"DATABASE_URL": "postgresql://u:p%5C%3Aw@h/db"})
    with private_pgpass(target, tmp_path) as copy:
        assert copy is not None
        (line,) = copy.read_text().splitlines()
        assert split_line(line) == ["*", "*", "*", "u", "p\\:w"]
    assert list(tmp_path.iterdir()) == []
