"""The database side of a restore: who the server is, what the target holds, loading, counting.

Shared by `restore` (restoring.py) and `drill` (drill.py). Every statement is in queries.sql;
names travel as psql variables, never spliced into SQL.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .artifacts import Artifact, opened
from .errors import ConfigError, ConnectionFailed, RestoreRefused, VerificationFailed
from .procs import Supervisor, tail
from .queries import query
from .restore import psql_script
from .settings import DumpFormat
from .streams import decoded, decoders
from .verify import row_counts
from .versions import Client

MAX_MISMATCHES = 10


@dataclass(frozen=True)
class LoadOptions:
    jobs: int = 1
    schema_only: bool = False
    no_owner: bool = False
    role: str | None = None
    clean: bool = False


@dataclass
class CountCheck:
    """The row-count comparison against the manifest."""

    tables: int = 0
    rows: int = 0
    mismatches: list[str] = field(default_factory=list)


def _scalar(sup: Supervisor, client: Client, env: dict[str, str], name: str, **v: str) -> str:
    argv = [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"]
    for key, value in v.items():
        argv += ["-v", f"{key}={value}"]
    rc, out, err = sup.run([*argv, "-f", "-"], env, stdin=query(name).encode())
    if rc != 0:
        raise ConnectionFailed(f"{name.replace('_', ' ')}: {err or f'psql exited {rc}'}")
    return out.strip()


def system_identifier(sup: Supervisor, client: Client, env: dict[str, str]) -> str:
    return _scalar(sup, client, env, "system_identifier")


def database_exists(sup: Supervisor, client: Client, env: dict[str, str], dbname: str) -> bool:
    return _scalar(sup, client, env, "database_exists", dbname=dbname) != "0"


def relation_count(sup: Supervisor, client: Client, env: dict[str, str]) -> int:
    text = _scalar(sup, client, env, "user_relation_count")
    return int(text) if text.isdigit() else 0


def create_database(sup: Supervisor, client: Client, env: dict[str, str], dbname: str) -> None:
    try:
        psql_script(sup, client, env, query("create_database"), variables={"dbname": dbname})
    except VerificationFailed as exc:
        raise RestoreRefused(
            reason="CannotCreateDatabase",
            message=f"cannot create database {dbname!r}: {exc.message}",
        ) from None


def drop_database(sup: Supervisor, client: Client, env: dict[str, str], dbname: str) -> None:
    """Also after a timeout or SIGTERM: runs outside the deadline, briefly."""
    argv = [client.tool("psql"), "-X", "-q", "-w", "-v", f"dbname={dbname}", "-f", "-"]
    sup.run_cleanup(argv, env, query("drop_database").encode())


def effective_jobs(artifact: Artifact, jobs: int) -> int:
    """pg_restore -j needs a seekable archive: directory, or custom read straight from a file."""
    if jobs <= 1 or artifact.format is DumpFormat.PLAIN or artifact.outer is not None:
        return 1
    return jobs


def load(
    sup: Supervisor,
    client: Client,
    artifact: Artifact,
    env: dict[str, str],
    options: LoadOptions,
) -> int:
    """Restore into env's PGDATABASE; returns the jobs used. Any error raises VerificationFailed.

    With one job the restore is one transaction (pg_restore --single-transaction, psql -1), so a
    failure leaves the target as it was.
    """
    jobs = effective_jobs(artifact, options.jobs)
    argv = _load_argv(client, artifact, env, options, jobs)
    if artifact.format is not DumpFormat.PLAIN and artifact.outer is None:
        argv.append(str(artifact.path))
    uses_stdin = artifact.format is DumpFormat.PLAIN or artifact.outer is not None
    feed = opened(sup, artifact, env) if uses_stdin else contextlib.nullcontext(None)
    with feed as stream:
        rc, err = _run_load(sup, argv, env, stream)
    if rc != 0:
        raise VerificationFailed(f"restore of {artifact.path.name} exited with {rc}: {tail(err)}")
    return jobs


def load_stream(
    sup: Supervisor,
    client: Client,
    chunks: Iterable[bytes],
    artifact: Artifact,
    env: dict[str, str],
    options: LoadOptions,
    identity: Path | None,
    expected_sha256: str | None,
) -> int:
    """As load, from stored bytes streamed in (a bucket's object): decrypted and decompressed on
    the way, one job, one transaction. The stored bytes' sha256 is checked before their last
    chunk reaches the restore, so a mismatch rolls the transaction back (streams.decoded)."""
    argv = _load_argv(client, artifact, env, options, 1)
    name = artifact.path.name
    stages = decoders(artifact, identity)
    with decoded(sup, chunks, stages, env, name=name, expected_sha256=expected_sha256) as feed:
        rc, err = _run_load(sup, argv, env, feed.stdout)
        if rc != 0:
            raise VerificationFailed(f"restore of {name} exited with {rc}: {tail(err)}")
    return 1


def _load_argv(
    client: Client, artifact: Artifact, env: dict[str, str], options: LoadOptions, jobs: int
) -> list[str]:
    if artifact.format is DumpFormat.PLAIN:
        if options.schema_only or options.clean or options.no_owner or options.role:
            raise ConfigError(
                "a plain SQL artifact replays as it is: schemaOnly, clean, noOwner and role "
                "need a custom or directory artifact"
            )
        return [client.tool("psql"), "-X", "-q", "-w", "-1", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    argv = [client.tool("pg_restore"), "-w", "--exit-on-error", "-d", env["PGDATABASE"]]
    argv += _restore_flags(options)
    argv += ["-j", str(jobs)] if jobs > 1 else ["--single-transaction"]
    return argv


def _run_load(
    sup: Supervisor, argv: list[str], env: dict[str, str], stdin: IO[bytes] | None
) -> tuple[int, bytes]:
    proc = sup.spawn(
        argv,
        env,
        stdin=stdin or subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = b""
    while block := proc.stderr.read(65536):
        err = (err + block)[-8192:]
    rc = sup.wait(proc)
    sup.check()
    return rc, err


def _restore_flags(options: LoadOptions) -> list[str]:
    flags: list[str] = []
    if options.schema_only:
        flags.append("--schema-only")
    if options.clean:
        flags += ["--clean", "--if-exists"]
    if options.no_owner:
        flags += ["--no-owner", "--no-privileges"]
    if options.role:
        flags.append(f"--role={options.role}")
    return flags


def compare_counts(
    sup: Supervisor,
    client: Client,
    env: dict[str, str],
    expected: Mapping[str, int],
    *,
    rows: bool,
) -> CountCheck:
    """Every table of the manifest exists in env's database, and (if `rows`) has its rows."""
    actual = row_counts(sup, client, env)
    check = CountCheck()
    for table, count in sorted(expected.items()):
        if table not in actual:
            check.mismatches.append(f"{table}: missing")
        elif rows and actual[table] != count:
            check.mismatches.append(f"{table}: {actual[table]} rows, manifest {count}")
        check.tables += 1
        check.rows += count
    return check


def refuse_mismatches(check: CountCheck) -> None:
    if check.mismatches:
        shown = "; ".join(check.mismatches[:MAX_MISMATCHES])
        more = len(check.mismatches) - MAX_MISMATCHES
        raise VerificationFailed(
            f"{len(check.mismatches)} of {check.tables} tables differ from the manifest: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
        )


def manifest_counts(manifest: Mapping[str, object] | None) -> dict[str, int] | None:
    """The manifest's tableRowCounts if it has well-formed ones (manifests are files: untrusted)."""
    raw = (manifest or {}).get("tableRowCounts")
    if not isinstance(raw, dict):
        return None
    return {
        str(k): int(v)
        for k, v in raw.items()
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }


def run_assertions(
    sup: Supervisor, client: Client, env: dict[str, str], assertions: Sequence[tuple[str, str]]
) -> list[str]:
    """Each (name, sql) must return exactly one true value; returns the passed names."""
    passed = []
    for name, sql in assertions:
        argv = [client.tool("psql"), "-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"]
        rc, out, err = sup.run([*argv, "-f", "-"], env, stdin=sql.encode())
        if rc != 0:
            raise VerificationFailed(f"assertion {name!r} failed to run: {err}")
        if out.strip() != "t":
            got = out.strip()[:80] or "no rows"
            raise VerificationFailed(f"assertion {name!r} did not return true (got {got!r})")
        passed.append(name)
    return passed
