"""The storage root, shared with other runs and other prefixes without touching them.

- Every name is resolved relative to one directory descriptor of the root, and every file
  the runner writes is created with O_EXCL|O_NOFOLLOW: a symbolic link planted in the root
  can neither redirect a write nor be written through.
- A run reserves its name by creating `<stem>.manifest.json` exclusively ("running"),
  before any artifact exists, and holds an flock on it while it lives. The same-second
  counter (`-1`, `-2`, ...) makes names unique; the flock tells a live run from a dead one.
- The inodes the run will need at the end (the final manifest, the `latest` pointer) are
  created with the reservation, so a full inode table fails the run before it dumps, never
  between its artifact and its manifest.
- Short critical sections (reservation and clean-up, publishing, pruning) hold the
  per-prefix lock `.<prefix>.lock`. Clean-up only removes `.tmp-<stem>.*` entries of this
  prefix's runs that are no longer alive.
- Artifacts appear under their final name only complete (fsync, then link or rename).
Every OSError becomes StorageFailed (6).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import artifacts
from .artifacts import TEMP_PREFIX, manifest_name
from .errors import StorageFailed

log = logging.getLogger(__name__)
MAX_JSON_BYTES = 1 << 20
MAX_SAME_SECOND = 999
LOCK_POLL_SECONDS = 0.05
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# link() refusals that rename() may still do: no hard links on this filesystem, or (tmpfs)
# no inode left for the link's own accounting.
_NO_HARD_LINKS = {
    errno.EPERM,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSPC,
    errno.EDQUOT,
}


def _fail(action: str, exc: OSError) -> StorageFailed:
    return StorageFailed(f"storage: cannot {action} ({exc.strerror or exc})")


def _reject_nan(value: str) -> Any:
    raise ValueError(f"not a JSON number: {value}")


def encode_json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _write_fd(fd: int, payload: bytes) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


@dataclass
class Reservation:
    """One run's name and the files it holds from start to end."""

    stem: str
    placeholder: int
    """fd of `<stem>.manifest.json` while it says "running"; flock'ed (the run is alive)."""
    manifest_temp: int
    latest_temp: int

    @property
    def manifest(self) -> str:
        return manifest_name(self.stem)

    @property
    def manifest_temp_name(self) -> str:
        return f"{TEMP_PREFIX}{self.manifest}"

    @property
    def latest_temp_name(self) -> str:
        return f"{TEMP_PREFIX}{self.stem}{artifacts.LATEST_SUFFIX}"


class Storage:
    """One storage root (the PVC mount, subPath applied) as seen by one prefix."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self._fd: int | None = None

    # -- the root ------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd is None:
            self.open()
        assert self._fd is not None
        return self._fd

    def make_below(self, mount: Path) -> None:
        """Create the root (a subdirectory of `mount`) as this process's user, mode 0750.

        The mount itself must exist: nothing is created outside the volume."""
        if not mount.is_dir():
            raise StorageFailed(f"storage root {mount} does not exist or is not a directory")
        try:
            self.root.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageFailed(
                f"storage: cannot create {self.root} ({exc.strerror or exc})"
            ) from None

    def open(self) -> None:
        """Fail early, before connecting, if the root is missing."""
        try:
            self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise StorageFailed(
                f"storage root {self.root} does not exist or is not a directory"
            ) from None
        except OSError as exc:
            raise _fail(f"open storage root {self.root}", exc) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def temp_path(self, final_name: str) -> Path:
        return self.root / f"{TEMP_PREFIX}{final_name}"

    def path(self, name: str) -> Path:
        return self.root / name

    @contextlib.contextmanager
    def locked(self, check: Callable[[], None]) -> Iterator[None]:
        """The per-prefix lock; `check` runs while waiting (a stop or timeout ends the wait)."""
        name = artifacts.lock_name(self.prefix)
        try:
            fd = os.open(
                name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660, dir_fd=self.fd
            )
        except OSError as exc:
            raise _fail(f"open the lock file {name}", exc) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    check()
                    time.sleep(LOCK_POLL_SECONDS)
                except OSError as exc:
                    raise _fail(f"lock {name}", exc) from None
            yield
        finally:
            os.close(fd)  # releases the flock

    # -- files ---------------------------------------------------------------
    def create(self, name: str, mode: int = 0o640, *, replace_planted: bool = False) -> int:
        """A new file (O_EXCL|O_NOFOLLOW). With `replace_planted`, an entry already at this
        name (only ever a crash leftover or something planted: the name is this run's) is
        removed first; it is never followed."""
        try:
            return os.open(name, _CREATE, mode, dir_fd=self.fd)
        except FileExistsError:
            if not replace_planted:
                raise
        self.remove(name)
        return os.open(name, _CREATE, mode, dir_fd=self.fd)

    def make_dir(self, name: str) -> Path:
        """A new empty directory for pg_dump's directory format (never a planted link)."""
        try:
            try:
                os.mkdir(name, 0o750, dir_fd=self.fd)
            except FileExistsError:
                self.remove(name)
                os.mkdir(name, 0o750, dir_fd=self.fd)
        except OSError as exc:
            raise _fail("create the temporary artifact directory", exc) from None
        return self.path(name)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def remove(self, name: str) -> None:
        """Remove a file, link or directory tree by name; links are removed, never followed."""
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            os.unlink(name, dir_fd=self.fd)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object, or None if the entry is missing, a link, too big or not JSON."""
        return read_json_at(name, self.fd)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (exclusive temp + fsync + rename) write a JSON document."""
        temp = f"{TEMP_PREFIX}{name}"
        try:
            fd = self.create(temp, replace_planted=True)
            try:
                _write_fd(fd, encode_json(data))
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self.fd)
            raise _fail(f"write {name}", exc) from None

    # -- a run's life --------------------------------------------------------
    def alive(self, stem: str) -> bool:
        """True while the run that reserved `stem` holds its flock."""
        try:
            fd = os.open(manifest_name(stem), _READ, dir_fd=self.fd)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # also drops our probe lock
        return False

    def reserve(self, started: datetime, placeholder: dict[str, Any]) -> Reservation:
        """Claim the first free `<prefix>-<stamp>[-N]` (call under `locked`)."""
        taken = self.names()
        for n in range(MAX_SAME_SECOND + 1):
            stem = artifacts.stem_for(self.prefix, started, n)
            if any(
                name == manifest_name(stem) or artifacts.artifact_of(stem, name) for name in taken
            ):
                continue
            try:
                fd = self.create(manifest_name(stem))
            except FileExistsError:
                continue  # another runner without our lock (e.g. an older version) got there
            except OSError as exc:
                raise _fail("reserve the run's manifest", exc) from None
            break
        else:
            raise StorageFailed(f"storage: more than {MAX_SAME_SECOND} runs in one second")
        temps: list[int] = []
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_fd(fd, encode_json(placeholder))
            for name in (
                f"{TEMP_PREFIX}{manifest_name(stem)}",
                f"{TEMP_PREFIX}{stem}{artifacts.LATEST_SUFFIX}",
            ):
                temps.append(self.create(name, replace_planted=True))
            os.fsync(self.fd)
        except OSError as exc:
            # nothing was dumped yet: give the name back rather than leave a half-written file
            for temp in (*temps, fd):
                os.close(temp)
            with contextlib.suppress(OSError):
                os.unlink(manifest_name(stem), dir_fd=self.fd)
            self.discard(stem)
            raise _fail("reserve the run's files", exc) from None
        return Reservation(stem, fd, temps[0], temps[1])

    def fail_in_place(self, res: Reservation, record: dict[str, Any]) -> None:
        """No inode left for a temp file: write the failure into the placeholder itself
        (not atomic, but the only write that needs no new inode)."""
        with contextlib.suppress(OSError):
            _write_fd(res.placeholder, encode_json(record))

    def commit(self, final_name: str) -> None:
        """fsync the temp artifact (file or tree), give it its final name, fsync the root.

        A file is hard-linked (which never replaces an entry) and its temp name removed;
        a directory is renamed (which never replaces a non-empty directory or a file)."""
        temp = f"{TEMP_PREFIX}{final_name}"
        try:
            _fsync_tree(self.fd, temp)
            if self.exists(final_name):
                raise StorageFailed(f"storage: {final_name} already exists; not replacing it")
            st = os.stat(temp, dir_fd=self.fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                try:
                    os.link(
                        temp,
                        final_name,
                        src_dir_fd=self.fd,
                        dst_dir_fd=self.fd,
                        follow_symlinks=False,
                    )
                    os.unlink(temp, dir_fd=self.fd)
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    os.rename(temp, final_name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:
                os.rename(temp, final_name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except FileExistsError:
            raise StorageFailed(f"storage: {final_name} already exists; not replacing it") from None
        except OSError as exc:
            raise _fail("finalise the artifact", exc) from None

    def finish(self, res: Reservation, manifest: dict[str, Any]) -> None:
        """Replace the placeholder by the final manifest (pre-created temp, fsync, rename)."""
        try:
            _write_fd(res.manifest_temp, encode_json(manifest))
            os.rename(res.manifest_temp_name, res.manifest, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except OSError as exc:
            raise _fail(f"write {res.manifest}", exc) from None

    def point_latest(self, res: Reservation, manifest: dict[str, Any]) -> bool:
        """Make `<prefix>.latest.json` this run's manifest unless a newer run's is there
        already (call under `locked`). Returns True if it now names this run."""
        name = artifacts.latest_name(self.prefix)
        current = self.latest_stem()
        ours = artifacts.stem_order(self.prefix, res.stem)
        if current is not None and ours is not None:
            theirs = artifacts.stem_order(self.prefix, current)
            if theirs is not None and theirs > ours and self.exists(manifest_name(current)):
                return False
        try:
            _write_fd(res.latest_temp, encode_json(manifest))
            os.rename(res.latest_temp_name, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except OSError as exc:
            raise _fail(f"write {name}", exc) from None
        return True

    def latest_stem(self) -> str | None:
        """The stem of the run `latest` names, if it names one of this prefix's artifacts."""
        data = self.read_json(artifacts.latest_name(self.prefix))
        artifact = data.get("artifact") if data else None
        parts = artifacts.split_name(artifact) if isinstance(artifact, str) else None
        if parts is None or artifacts.stem_order(self.prefix, parts[0]) is None:
            return None
        return parts[0]

    def latest_artifact(self) -> str | None:
        data = self.read_json(artifacts.latest_name(self.prefix))
        artifact = data.get("artifact") if data else None
        return artifact if isinstance(artifact, str) else None

    def release(self, res: Reservation) -> None:
        """End of the run: close its files and remove whatever of its temp names is left."""
        for fd in (res.manifest_temp, res.latest_temp, res.placeholder):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.discard(res.stem)

    def discard(self, stem: str) -> list[str]:
        """Remove every `.tmp-<stem>.*` entry (only ever this run's, or a dead run's)."""
        removed = []
        own = re.compile(rf"{re.escape(TEMP_PREFIX + stem)}\..+")
        with contextlib.suppress(OSError):
            for name in self.names():
                if own.fullmatch(name):
                    with contextlib.suppress(OSError):
                        self.remove(name)
                        removed.append(name)
        return removed

    def clean_dead_runs(self, now: datetime) -> list[str]:
        """Tidy up after runs of this prefix that died (call under `locked`): their temp
        entries go, a "running" manifest says it failed, and an artifact that lost its
        manifest gets a failed one (retention removes both after the failed-run age)."""
        names = self.names()
        pattern = re.compile(artifacts.stem_pattern(self.prefix))
        temp = re.compile(rf"{re.escape(TEMP_PREFIX)}({artifacts.stem_pattern(self.prefix)})\..+")
        done: list[str] = []
        for name in names:
            match = temp.fullmatch(name)
            if match and not self.alive(match.group(1)):
                with contextlib.suppress(OSError):
                    self.remove(name)
                    done.append(name)
        stems_with_manifest = set()
        for name in names:
            stem = name.removesuffix(artifacts.MANIFEST_SUFFIX)
            if stem == name or not pattern.fullmatch(stem):
                continue
            stems_with_manifest.add(stem)
            data = self.read_json(name)
            if data is not None and data.get("status") == "running" and not self.alive(stem):
                self._record_dead(
                    stem, data, "the run ended before it finished (killed or crashed)", now
                )
                done.append(name)
        for name in names:
            parts = artifacts.split_name(name)
            if parts is None or not pattern.fullmatch(parts[0]) or parts[0] in stems_with_manifest:
                continue
            mtime = datetime.fromtimestamp(
                os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime, UTC
            )
            self._record_dead(
                parts[0],
                {"startedAt": None},
                f"found {name} without a manifest (a run could not finish writing it); "
                "not a trusted backup",
                min(mtime, now),
                orphan=name,
            )
            stems_with_manifest.add(parts[0])
            done.append(name)
        if done:
            log.info(
                "tidied up after dead runs", extra={"event": "storage.leftovers", "names": done}
            )
        return done

    def _record_dead(
        self,
        stem: str,
        data: dict[str, Any],
        why: str,
        finished: datetime,
        orphan: str | None = None,
    ) -> None:
        record = {
            "status": "failed",
            "exitCode": 1,
            "reason": "InternalError",
            "message": why,
            "artifact": None,
            "orphanArtifact": orphan,
            "sizeBytes": None,
            "sha256": None,
            "startedAt": data.get("startedAt"),
            "finishedAt": _stamp(finished),
        }
        try:
            self.write_json(manifest_name(stem), record)
        except StorageFailed as exc:
            log.warning(exc.message, extra={"event": "storage.leftovers_failed", "stem": stem})


def wait_at_most(seconds: float) -> Callable[[], None]:
    """A lock-wait check for steps that must run even after a stop, but not forever."""
    end = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() > end:
            raise StorageFailed(f"storage: the prefix lock stayed busy for {seconds:g}s")

    return check


def read_json_at(path: str | Path, dir_fd: int | None = None) -> dict[str, Any] | None:
    """A JSON object, or None if the entry is missing, a link, too big or not JSON."""
    try:
        fd = os.open(path, _READ, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_JSON_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_nan)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_tree(dir_fd: int, name: str) -> None:
    fd = os.open(name, _READ, dir_fd=dir_fd)
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            for child in sorted(os.listdir(fd)):
                _fsync_tree(fd, child)
        os.fsync(fd)
    finally:
        os.close(fd)
