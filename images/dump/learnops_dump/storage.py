"""The storage directory: temp names, fsync, rename on success, JSON manifests.

Nothing under a final name is ever partial: artifacts are written as
`.tmp-<name>` and renamed only after an fsync; a crash leaves only `.tmp-*`
entries, which the next run removes. Every OSError becomes StorageFailed (6).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import StorageFailed

log = logging.getLogger(__name__)
TEMP_PREFIX = ".tmp-"
LATEST = "latest.json"
MANIFEST_SUFFIX = ".manifest.json"


def _fail(action: str, exc: OSError) -> StorageFailed:
    return StorageFailed(f"storage: cannot {action} ({exc.strerror or exc})")


class Storage:
    """One storage root (the PVC mount, subPath applied)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> None:
        """Fail early, before connecting, if the root is missing or unwritable."""
        if not self.root.is_dir():
            raise StorageFailed(f"storage root {self.root} does not exist or is not a directory")
        try:
            with tempfile.TemporaryFile(dir=self.root, prefix=TEMP_PREFIX):
                pass
        except OSError as exc:
            raise _fail(f"write to storage root {self.root}", exc) from None

    def clean_leftovers(self) -> list[str]:
        """Remove `.tmp-*` entries of crashed runs (runs never overlap: CronJob Forbid)."""
        removed = []
        for entry in self.root.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry.name)
        if removed:
            log.info(
                "removed leftovers of earlier runs",
                extra={"event": "storage.leftovers", "names": removed},
            )
        return removed

    def unique_stem(self, stem: str) -> str:
        """`stem`, or `stem-N` if a manifest of that name exists (runs within one second)."""
        candidate, n = stem, 1
        while (self.root / f"{candidate}{MANIFEST_SUFFIX}").exists():
            candidate, n = f"{stem}-{n}", n + 1
        return candidate

    def temp_path(self, final_name: str) -> Path:
        return self.root / f"{TEMP_PREFIX}{final_name}"

    @contextlib.contextmanager
    def open_temp(self, final_name: str) -> Iterator[int]:
        """An O_EXCL file descriptor at the temp name; closed on exit (not renamed)."""
        try:
            fd = os.open(
                self.temp_path(final_name),
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o640,
            )
        except OSError as exc:
            raise _fail("create the temporary artifact", exc) from None
        try:
            yield fd
        finally:
            os.close(fd)

    def commit(self, final_name: str) -> None:
        """fsync the temp artifact (file or directory tree), rename it, fsync the root."""
        temp = self.temp_path(final_name)
        try:
            _fsync_tree(temp)
            os.rename(temp, self.root / final_name)
            _fsync_path(self.root)
        except OSError as exc:
            raise _fail("finalise the artifact", exc) from None

    def discard(self, final_name: str) -> None:
        """Remove the temp artifact of a failed run (best effort: it is named .tmp-)."""
        temp = self.temp_path(final_name)
        with contextlib.suppress(OSError):
            if temp.is_dir() and not temp.is_symlink():
                shutil.rmtree(temp)
            else:
                temp.unlink(missing_ok=True)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (temp + fsync + rename) write a JSON document."""
        temp = self.temp_path(name)
        try:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.rename(temp, self.root / name)
            _fsync_path(self.root)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise _fail(f"write {name}", exc) from None

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove(self, name: str) -> None:
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.iterdir()):
            _fsync_tree(child)
    _fsync_path(path)
