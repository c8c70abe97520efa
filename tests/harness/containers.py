"""The container engine for image tests: Debian's docker.io, started here if it is not running.

Containers run the way a kubelet runs a restricted pod: numeric non-root user with a
supplementary group, read-only root filesystem, all capabilities dropped, no privilege
escalation, a memory limit without swap, an emptyDir-like /tmp, and Secret volumes with the
kubelet's layout (timestamped dir, `..data` symlink, root owner, fsGroup group, group-read).
All traffic stays on loopback: the daemon has no bridge, containers use the host network.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

HARNESS = Path(__file__).resolve().parent
BASE_SCRIPT = HARNESS / "make-base-image.sh"
DOCKERD_LOG = Path("/tmp/learnops-dockerd.log")
# One lock file per image tag: two test processes building one tag (the suite and a command
# beside it) take turns, so the second build is a layer-cache hit instead of the same work twice.
BUILD_LOCKS = Path(tempfile.gettempdir()) / "learnops-build-locks"
RUNTIME_UID = 65532


@contextlib.contextmanager
def _build_lock(tag: str) -> Iterator[None]:
    BUILD_LOCKS.mkdir(exist_ok=True)
    path = BUILD_LOCKS / hashlib.sha256(tag.encode()).hexdigest()[:16]
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also if we are killed
        yield


class EngineUnavailable(RuntimeError):
    """The container engine cannot be used on this machine."""


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def ensure_dockerd(timeout: float = 60.0) -> None:
    """Start dockerd (loopback only: no bridge, no iptables) unless one already answers."""
    if docker_ready():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise EngineUnavailable(
            "no running Docker and cannot start dockerd (need root + docker.io)"
        )
    with DOCKERD_LOG.open("ab") as log:
        # `setsid -f` forks dockerd off in its own session and returns at once: the daemon
        # outlives this process, and no Popen of ours is left to warn about a running child.
        subprocess.run(
            ["setsid", "-f", dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not docker_ready():
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"dockerd did not come up; see {DOCKERD_LOG}")
        time.sleep(0.5)


def extra_ca_build_arg() -> dict[str, str]:
    """This machine reaches PyPI through a TLS-intercepting proxy; builds must trust its CA."""
    certs = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    bundle = "".join(c.read_text() for c in certs)
    return {"EXTRA_CA_CERTS": bundle} if bundle else {}


class Engine:
    """Build our Dockerfiles on the local base image and run them like a kubelet would."""

    def __init__(self) -> None:
        ensure_dockerd()
        made = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise EngineUnavailable(f"could not make the base image: {made.stderr[-2000:]}")
        self.base_image = made.stdout.strip().splitlines()[-1]
        self._scratch = Path(tempfile.mkdtemp(prefix="learnops-containers-"))

    def build(
        self,
        tag: str,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str] | None = None,
    ) -> str:
        args = {"BASE": self.base_image, **extra_ca_build_arg(), **(build_args or {})}
        argv = ["docker", "build", "--network", "host", "-f", str(dockerfile), "-t", tag]
        for key, value in args.items():
            argv += ["--build-arg", f"{key}={value}"]
        with _build_lock(tag):
            built = subprocess.run(
                [*argv, str(context)], capture_output=True, text=True, check=False
            )
        if built.returncode != 0:
            raise RuntimeError(
                f"docker build {tag} failed:\n{built.stdout[-4000:]}{built.stderr[-4000:]}"
            )
        return tag

    def run_argv(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        user: str = f"{RUNTIME_UID}:{RUNTIME_UID}",
        group_add: Iterable[int] = (),
        read_only: bool = True,
        memory: str = "64m",
        tmpfs: Iterable[str] = ("/tmp",),
        mounts: Iterable[tuple[Path, str, bool]] = (),
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        entrypoint: str | None = None,
        detach: bool = False,
    ) -> list[str]:
        """The `docker run` argv for a restricted-PSS-like container (env values: no secrets)."""
        argv = ["docker", "run", "--network", "host", "--user", user, "--memory", memory,
                "--memory-swap", memory, "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges"]  # fmt: skip
        argv += ["-d"] if detach else ["--rm", "-i"]
        if read_only:
            argv.append("--read-only")
        for gid in group_add:
            argv += ["--group-add", str(gid)]
        for path in tmpfs:
            argv += ["--tmpfs", f"{path}:rw,mode=1777,size=256m"]
        for host, target, readonly in mounts:
            argv += ["-v", f"{host}:{target}:{'ro' if readonly else 'rw'}"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if name:
            argv += ["--name", name]
        if entrypoint is not None:
            argv += ["--entrypoint", entrypoint]
        return [*argv, image, *args]

    def run(
        self, image: str, args: Sequence[str] = (), *, timeout: float = 300, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        argv = self.run_argv(image, args, **kw)  # type: ignore[arg-type]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def secret_volume(
        self, files: Mapping[str, str], fs_group: int, default_mode: int = 0o644
    ) -> Path:
        """A host dir laid out as the kubelet lays out a Secret volume with an fsGroup."""
        vol = Path(tempfile.mkdtemp(dir=self._scratch, prefix="secret-"))
        stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        data = vol / stamp
        data.mkdir()
        for key, content in files.items():
            (data / key).write_text(content)
            os.chown(data / key, 0, fs_group)
            # With an fsGroup the kubelet adds group read to read-only volumes.
            os.chmod(data / key, default_mode | 0o440)
            (vol / key).symlink_to(Path("..data") / key)
        (vol / "..data").symlink_to(stamp)
        for d in (vol, data):
            os.chown(d, 0, fs_group)
            os.chmod(d, 0o2755)  # setgid dir, as the kubelet leaves it
        return vol

    def writable_dir(self, uid: int = RUNTIME_UID, gid: int = RUNTIME_UID) -> Path:
        """A host dir the container user may write (stands in for a PVC)."""
        d = Path(tempfile.mkdtemp(dir=self._scratch, prefix="volume-"))
        os.chown(d, uid, gid)
        os.chmod(d, 0o2770)
        return d

    def image_size(self, image: str) -> int:
        out = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout.strip())

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
