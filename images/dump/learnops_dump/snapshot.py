"""Row counts exactly as the dump saw them: one psql session exports its snapshot to pg_dump.

The session opens a REPEATABLE READ transaction and exports its snapshot; pg_dump runs with
`--snapshot`, so it reads the very same state. After the dump the session counts every table in
that snapshot. The counts go into the manifest (`tableRowCounts`), where restores and restore
drills compare against them: concurrent writes to the source cannot make them disagree.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .errors import DumpFailed
from .procs import Supervisor, tail
from .queries import query
from .versions import Client

END = "__learnops_end__"
MAX_TABLES = 100_000


@dataclass
class Session:
    """An open snapshot transaction: its id, and a way to run SQL in it."""

    proc: subprocess.Popen[bytes]
    snapshot: str
    err: IO[bytes]

    def _ask(self, sql: str) -> list[str]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{sql.strip()}\n\\echo {END}\n".encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise DumpFailed(f"the snapshot session ended: {self._err()}") from None
        lines: list[str] = []
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                raise DumpFailed(f"the snapshot session ended: {self._err()}")
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line == END:
                return lines
            if len(lines) < MAX_TABLES:
                lines.append(line)

    def _err(self) -> str:
        self.err.seek(0)
        return tail(self.err.read()) or "no error output"

    def row_counts(self) -> dict[str, int]:
        """schema.table -> exact row count, in the dump's snapshot."""
        counts: dict[str, int] = {}
        for line in self._ask(query("table_row_counts")):
            name, _, count = line.rpartition("|")
            if name and count.isdigit():
                counts[name] = int(count)
        return counts

    def system_identifier(self) -> str:
        lines = self._ask(query("system_identifier"))
        return lines[0].strip() if lines and lines[0].strip().isdigit() else ""


@contextlib.contextmanager
def snapshot_session(
    sup: Supervisor, client: Client, env: dict[str, str], tmpdir: str
) -> Iterator[Session]:
    """psql holding the exported snapshot for as long as the block runs."""
    with tempfile.TemporaryFile(dir=tmpdir) as err:
        argv = [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"]
        proc = sup.spawn(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        try:
            session = Session(proc, "", err)
            lines = session._ask(query("begin_snapshot"))
            snapshot = lines[-1].strip() if lines else ""
            if not snapshot:
                raise DumpFailed(f"cannot export a snapshot: {session._err()}")
            session.snapshot = snapshot
            yield session
        finally:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.write(b"COMMIT;\n")
                proc.stdin.close()
            if proc.stdout is not None:
                proc.stdout.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
            sup.wait(proc)
