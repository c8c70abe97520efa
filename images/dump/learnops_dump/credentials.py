"""A private pgpass copy that libpq accepts, read exactly as libpq reads it, always removed.

libpq ignores a pgpass file that is group- or world-readable, and a Kubernetes
Secret volume with `fsGroup` is exactly that (root-owned, 0440/0640, reached
through `..data` symlinks). So we copy its content into a fresh 0600 file in
TMPDIR and point PGPASSFILE there. A URL source gets the same treatment: its
password is written only into that private file. TMPDIR is the pod's memory-backed
emptyDir (docs/dump.md, "Credentials"), so even a copy a SIGKILL leaves behind never
reaches a disk and goes with the pod; each copy is flock'ed by its run, and the next run
in the same TMPDIR removes copies whose run is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .connection import Target
from .errors import ConfigError, ConnectionFailed
from .masking import register_secret

log = logging.getLogger(__name__)
MAX_PGPASS_BYTES = 1 << 20
COPY_PREFIX = "learnops-pgpass-"
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@dataclass(frozen=True)
class Entry:
    """One pgpass line that libpq can match, as raw (still escaped) field texts."""

    host: str
    port: str
    database: str
    user: str
    rest: str
    """Everything after the user's ':' (the password up to the next unescaped ':')."""

    @property
    def password(self) -> str:
        """libpq's de-escaping: '\\x' is 'x', the password ends at an unescaped ':'."""
        out, i = [], 0
        while i < len(self.rest) and self.rest[i] != ":":
            if self.rest[i] == "\\" and i + 1 < len(self.rest):
                i += 1
            out.append(self.rest[i])
            i += 1
        return "".join(out)

    def line(self, database: str | None = None) -> str:
        db = self.database if database is None else database
        return f"{self.host}:{self.port}:{db}:{self.user}:{self.rest}"


def _next_field(line: str, start: int) -> int | None:
    """Index of the unescaped ':' that ends the field starting at `start` (libpq's rules)."""
    i = start
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == ":":
            return i
        i += 1
    return None


def parse_line(line: str) -> Entry | None:
    """A pgpass line as libpq sees it: None for a line it can never match."""
    fields, start = [], 0
    for _ in range(4):
        end = _next_field(line, start)
        if end is None:
            return None
        fields.append(line[start:end])
        start = end + 1
    host, port, database, user = fields
    return Entry(host, port, database, user, rest=line[start:])


def lines(content: str) -> list[str]:
    """libpq's lines: split on '\\n' only (not U+2028, U+0085, ...), trailing CR/LF
    stripped, empty lines and lines starting with '#' (in column one) skipped."""
    out = []
    for raw in content.split("\n"):
        line = raw.rstrip("\r\n")
        if line and not line.startswith("#"):
            out.append(line)
    return out


def split_line(line: str) -> list[str]:
    """Split one pgpass line on unescaped ':' (libpq's rules), unescaping fields."""
    out, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


def private_lines(content: str) -> list[str]:
    """The entries to write: the originals, then each again for any database.

    The repeated entries (database `*`, after the originals so those still win)
    let BACKUP_VERIFY=restore log in to its scratch database with the same role.
    Every password is registered with the masker, in the spellings libpq reads and
    the file holds.
    """
    kept, extra = [], []
    for line in lines(content):
        entry = parse_line(line)
        if entry is None:
            # libpq never uses it, but it may still hold a password: mask its tail
            register_secret(split_line(line)[-1])
            kept.append(line)
            continue
        register_secret(entry.password)
        register_secret(entry.rest)
        register_secret(entry.rest.partition(":")[0])
        kept.append(line)
        extra.append(entry.line("*"))
    return kept + extra


def pgpass_content(target: Target) -> str:
    """What the private pgpass holds for this target."""
    if target.password is not None:
        line = ":".join(["*", "*", "*", _escape(target.user or "*"), ""])
        return line + _escape(target.password.reveal()) + "\n"
    if target.passfile is None:
        return ""
    try:
        with target.passfile.open("rb") as f:
            data = f.read(MAX_PGPASS_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("PGPASSFILE: the file does not exist") from None
    except OSError as exc:
        raise ConnectionFailed(f"PGPASSFILE: cannot read the file ({exc.strerror})") from None
    if len(data) > MAX_PGPASS_BYTES:
        raise ConfigError(f"PGPASSFILE: the file is larger than {MAX_PGPASS_BYTES} bytes")
    if b"\0" in data:
        raise ConfigError("PGPASSFILE: the file contains a NUL byte")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("PGPASSFILE: the file is not UTF-8 text") from None
    return "\n".join(private_lines(text)) + "\n"


def filesystem_of(path: Path) -> str | None:
    """The filesystem type of the mount holding `path` (from /proc/self/mountinfo)."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            mounts = f.read().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in mounts:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the deepest mount wins (later ones on ties)
            best, fstype = point, right.split()[0]
    return fstype


def remove_dead_copies(tmpdir: Path) -> list[str]:
    """Private copies whose run is gone (SIGKILL, OOM kill): nobody holds their flock."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmpdir):
            if not entry.name.startswith(COPY_PREFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                continue  # a live run's copy
            finally:
                os.close(fd)
    if removed:
        log.warning(
            "removed private pgpass copies of runs that were killed",
            extra={"event": "credentials.dead_copies", "count": len(removed)},
        )
    return removed


@contextlib.contextmanager
def private_pgpass(target: Target, tmpdir: Path) -> Iterator[Path | None]:
    """Yield the path of a 0600 pgpass copy in `tmpdir`; always removed afterwards."""
    content = pgpass_content(target)
    if not content.strip():
        yield None
        return
    remove_dead_copies(tmpdir)
    fstype = filesystem_of(tmpdir)
    if fstype not in MEMORY_FILESYSTEMS:
        log.warning(
            "TMPDIR is not memory-backed: a killed run would leave the private pgpass on disk",
            extra={"event": "credentials.tmpdir_on_disk", "filesystem": fstype or "unknown"},
        )
    try:
        fd, name = tempfile.mkstemp(prefix=COPY_PREFIX, dir=tmpdir)
    except OSError as exc:
        raise ConfigError(f"TMPDIR: cannot create the private pgpass ({exc.strerror})") from None
    path = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the end: this copy's run is alive
        os.fchmod(fd, 0o600)  # mkstemp already does; be explicit for libpq
        data = content.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
