"""Load an artifact into a database (the `restore` subcommand and scratch verification)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping

from .artifacts import Artifact, opened
from .errors import VerificationFailed
from .masking import MaskedTail
from .procs import STDERR_TAIL_BYTES, Supervisor
from .settings import DumpFormat
from .versions import Client


def psql_script(
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    script: str,
    *,
    variables: Mapping[str, str] | None = None,
    on_error_stop: bool = True,
) -> str:
    """Run SQL fed on stdin (so psql variables interpolate); returns psql's output."""
    argv = [client.tool("psql"), "-X", "-A", "-t", "-q", "-w"]
    argv += ["-v", f"ON_ERROR_STOP={int(on_error_stop)}"]
    for key, value in (variables or {}).items():
        argv += ["-v", f"{key}={value}"]
    rc, out, err = sup.run([*argv, "-f", "-"], env, stdin=script.encode())
    if rc != 0:
        raise VerificationFailed(f"psql exited with {rc}: {err}")
    return out


def restore_into(
    sup: Supervisor,
    client: Client,
    artifact: Artifact,
    env: dict[str, str],
    *,
    scratch: bool = False,
    jobs: int = 1,
) -> None:
    """Restore into env's PGDATABASE; any error raises VerificationFailed.

    A scratch restore drops ownership and privileges (the backup role need not
    own every object) and, for plain SQL, keeps going past errors such as
    `ALTER ... OWNER`; the row-count comparison is what judges it.
    """
    if artifact.format is DumpFormat.PLAIN:
        argv = [client.tool("psql"), "-X", "-q", "-w", "-v", f"ON_ERROR_STOP={int(not scratch)}"]
        argv += ["-f", "-"]
    else:
        argv = [client.tool("pg_restore"), "-w", "--exit-on-error", "-d", env["PGDATABASE"]]
        if scratch:
            argv += ["--no-owner", "--no-privileges"]
        if artifact.format is DumpFormat.DIRECTORY and jobs > 1:
            argv += ["-j", str(jobs)]
        if artifact.outer is None:
            argv.append(str(artifact.path))
    uses_stdin = artifact.format is DumpFormat.PLAIN or artifact.outer is not None
    feed = opened(sup, artifact, env) if uses_stdin else contextlib.nullcontext(None)
    with feed as stream:
        proc = sup.spawn(
            argv,
            env,
            stdin=stream or subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        err = MaskedTail(STDERR_TAIL_BYTES)
        while block := proc.stderr.read(65536):
            err.feed(block)
        rc = sup.wait(proc)
    sup.check()
    if rc != 0:
        raise VerificationFailed(f"restore of {artifact.path.name} exited with {rc}: {err.text()}")
