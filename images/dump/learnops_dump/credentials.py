"""A private pgpass copy that libpq accepts, removed when the run ends.

libpq ignores a pgpass file that is group- or world-readable, and a Kubernetes
Secret volume with `fsGroup` is exactly that (root-owned, 0440/0640, reached
through `..data` symlinks). So we copy its content into a fresh 0600 file in
TMPDIR (an emptyDir) and point PGPASSFILE there. A URL source gets the same
treatment: its password is written only into that private file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .connection import Target
from .errors import ConfigError, ConnectionFailed
from .masking import register_secret

MAX_PGPASS_BYTES = 1 << 20


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


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
    """
    lines, extra = [], []
    for raw in content.splitlines():
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = split_line(line)
        if len(fields) < 5:
            continue
        host, port, _db, user = fields[:4]
        password = ":".join(fields[4:])
        register_secret(password)
        lines.append(line)
        extra.append(":".join(_escape(v) for v in (host, port, "*", user, password)))
    return lines + extra


def pgpass_content(target: Target) -> str:
    """What the private pgpass holds for this target."""
    if target.password is not None:
        line = ":".join(["*", "*", "*", _escape(target.user or "*"), ""])
        return line + _escape(target.password.reveal()) + "\n"
    if target.passfile is None:
        return ""
    try:
        with target.passfile.open("rb") as f:
            data = f.read(MAX_PGPASS_BYTES)
    except FileNotFoundError:
        raise ConfigError("PGPASSFILE: the file does not exist") from None
    except OSError as exc:
        raise ConnectionFailed(f"PGPASSFILE: cannot read the file ({exc.strerror})") from None
    return "\n".join(private_lines(data.decode("utf-8", "replace"))) + "\n"


@contextlib.contextmanager
def private_pgpass(target: Target, tmpdir: Path) -> Iterator[Path | None]:
    """Yield the path of a 0600 pgpass copy in `tmpdir`; always removed afterwards."""
    content = pgpass_content(target)
    if not content.strip():
        yield None
        return
    try:
        fd, name = tempfile.mkstemp(prefix="learnops-pgpass-", dir=tmpdir)
    except OSError as exc:
        raise ConfigError(f"TMPDIR: cannot create the private pgpass ({exc.strerror})") from None
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # mkstemp already does; be explicit for libpq
            f.write(content)
        yield path
    finally:
        path.unlink(missing_ok=True)
