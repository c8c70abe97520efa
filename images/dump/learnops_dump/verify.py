"""Everything that proves an artifact is what it claims to be.

- `check_manifest`: the manifest beside it says "ok", names it, and its sizeBytes and
  sha256 are those of the bytes on disk (an artifact without a manifest is refused unless
  forced).
- `verify_archive`: the whole archive reads back: an outer-compressed stream is decompressed
  completely, the table of contents lists, and every data block is decompressed and parsed
  (`pg_restore -f /dev/null`); a plain script must end with pg_dump's trailer. The archive's
  own header must name the database the manifest says it came from.
- `check_source`: before `restore`, the backup must come from the database and server this
  configuration backs up (unless allowed otherwise).
- `verify_restore`: optionally, a scratch restore with row counts compared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .artifacts import Artifact, artifact_digest, manifest_for, opened
from .errors import VerificationFailed
from .logs import event
from .procs import Supervisor, file_tail
from .queries import query
from .restore import psql_script, restore_into
from .settings import DumpFormat
from .storage import read_json_at
from .versions import Client

log = logging.getLogger(__name__)
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"
TAIL_BYTES = 4096
TESTER = {"zstd": ("zstd", "-t", "-q"), "lz4": ("lz4", "-t", "-q"), "gzip": ("gzip", "-t")}
_HEADER_DBNAME = re.compile(rb";\s+dbname: (.*)")


def check_manifest(sup: Supervisor, artifact: Artifact, *, force: bool) -> dict[str, Any] | None:
    """The artifact's own manifest, checked against the bytes; None only when forced."""
    name = artifact.path.name
    path = manifest_for(artifact.path)
    manifest = read_json_at(path) if path is not None else None
    if manifest is None:
        if not force:
            raise VerificationFailed(
                f"{name}: no readable manifest beside it, so nothing says what it is; "
                "pass --force to check it anyway"
            )
        event(log, "verify.no_manifest", "no manifest beside it; sha256 not checked (--force)")
        return None
    entry = _entry_for(manifest, name)
    if manifest.get("status") != "ok" or entry is None:
        raise VerificationFailed(f"{name}: its manifest does not record it as a good backup")
    manifest = {**manifest, **entry}  # a part's own size, sha256 and database
    try:
        size, sha256 = artifact_digest(artifact.path, sup.check)
    except OSError as exc:
        raise VerificationFailed(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if size != manifest.get("sizeBytes"):
        raise VerificationFailed(f"{name}: size {size} differs from its manifest")
    if sha256 != manifest.get("sha256"):
        raise VerificationFailed(f"{name}: sha256 differs from its manifest")
    return manifest


def check_stored_manifest(
    name: str, manifest: dict[str, Any] | None, *, force: bool
) -> dict[str, Any] | None:
    """A bucket artifact's manifest, before its bytes are streamed (the digest is checked on the
    way, streams.decoded): it must record the artifact as good; None only when forced."""
    if manifest is None:
        if not force:
            raise VerificationFailed(
                f"{name}: no readable manifest beside it, so nothing says what it is; "
                "pass --force to restore it anyway"
            )
        event(log, "verify.no_manifest", "no manifest beside it; sha256 not checked (--force)")
        return None
    entry = _entry_for(manifest, name)
    if manifest.get("status") != "ok" or entry is None:
        raise VerificationFailed(f"{name}: its manifest does not record it as a good backup")
    return {**manifest, **entry}


def _entry_for(manifest: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The manifest's line for `name`: the run's own artifact, a database's, or the globals."""
    if manifest.get("artifact") == name:
        return {}
    lines = manifest.get("databases")
    candidates = [*(lines if isinstance(lines, list) else []), manifest.get("globals")]
    for line in candidates:
        if isinstance(line, dict) and line.get("artifact") == name and line.get("status") == "ok":
            keys = ("artifact", "sizeBytes", "sha256", "database", "tableRowCounts")
            return {k: line.get(k) for k in keys}  # a part's own row counts, or none
    return None


def verify_archive(
    sup: Supervisor,
    client: Client,
    artifact: Artifact,
    env: dict[str, str],
    database: str | None = None,
) -> int:
    """Read the whole artifact back; returns the number of TOC entries (plain: 0).

    `database`, if given, must be the dbname the archive's header records."""
    if artifact.outer is not None:
        rc, _, err = sup.run([*TESTER[artifact.outer], str(artifact.path)], env)
        if rc != 0:
            raise VerificationFailed(f"{artifact.path.name}: {artifact.outer} test failed: {err}")
    if artifact.format is DumpFormat.PLAIN:
        _check_plain_trailer(sup, artifact, env)
        return 0
    entries, dbname = _list(sup, client, artifact, env)
    if database is not None and dbname is not None and dbname != database:
        raise VerificationFailed(
            f"{artifact.path.name}: the archive is a dump of another database than its "
            "manifest records"
        )
    _read_everything(sup, client, artifact, env)
    return entries


def _pg_restore(
    sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str], args: list[str]
) -> tuple[int, int, str | None, str]:
    """pg_restore over the archive (from a stream if outer-compressed).

    Returns (rc, TOC entries listed on stdout, the header's dbname, masked stderr tail)."""
    feed = opened(sup, artifact, env) if artifact.outer else contextlib.nullcontext(None)
    with feed as stream, tempfile.TemporaryFile(dir=env.get("TMPDIR")) as err:
        target = [str(artifact.path)] if artifact.outer is None else []
        proc = sup.spawn(
            [client.tool("pg_restore"), *args, *target],
            env,
            stdin=stream or subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        entries, dbname = 0, None
        for line in proc.stdout:
            if line.startswith(b";"):
                match = _HEADER_DBNAME.match(line.rstrip(b"\n"))
                if match and dbname is None:
                    dbname = match.group(1).decode("utf-8", "replace").strip()
            elif line.strip():
                entries += 1
        rc = sup.wait(proc)
        text = file_tail(err)
    sup.check()
    return rc, entries, dbname, text


def _list(
    sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]
) -> tuple[int, str | None]:
    rc, entries, dbname, err = _pg_restore(sup, client, artifact, env, ["--list"])
    if rc != 0 or entries == 0:
        raise VerificationFailed(
            f"{artifact.path.name}: pg_restore --list exited with {rc}: {err or 'no entries'}"
        )
    return entries, dbname


def _read_everything(
    sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]
) -> None:
    rc, _, _, err = _pg_restore(sup, client, artifact, env, ["-f", os.devnull])
    if rc != 0:
        raise VerificationFailed(
            f"{artifact.path.name}: reading every data block failed "
            f"(pg_restore -f {os.devnull} exited with {rc}): {err}"
        )


def _check_plain_trailer(sup: Supervisor, artifact: Artifact, env: dict[str, str]) -> None:
    end = b""
    with opened(sup, artifact, env) as stream:
        while block := stream.read(1 << 20):
            end = (end + block)[-TAIL_BYTES:]
    sup.check()
    if PLAIN_TRAILER not in end:
        raise VerificationFailed(f"{artifact.path.name}: the SQL script is incomplete")


def check_source(
    manifest: dict[str, Any] | None,
    archive_db: str | None,
    database: str | None,
    system_identifier: str | None,
) -> None:
    """The backup must be of `database` (if given) on the server `system_identifier` names."""
    recorded = manifest.get("database") if manifest else archive_db
    if database is not None and recorded is not None and recorded != database:
        raise VerificationFailed(
            "the artifact is a backup of another database than this configuration backs up "
            "(PGDATABASE); pass --allow-other-source to restore it anyway"
        )
    theirs = manifest.get("systemIdentifier") if manifest else None
    if theirs and system_identifier and theirs != system_identifier:
        raise VerificationFailed(
            "the artifact comes from another server (system identifier) than the one this "
            "restore connects to; pass --allow-other-source to restore it anyway"
        )


def archive_database(
    sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]
) -> str | None:
    """The dbname an archive's header records (plain scripts record none)."""
    if artifact.format is DumpFormat.PLAIN:
        return None
    return _list(sup, client, artifact, env)[1]


def row_counts(sup: Supervisor, client: Client, env: dict[str, str]) -> dict[str, int]:
    out = psql_script(sup, client, env, query("table_row_counts"), on_error_stop=True)
    counts: dict[str, int] = {}
    for line in out.splitlines():
        name, _, count = line.rpartition("|")
        if name:
            counts[name] = int(count)
    return counts


def verify_restore(sup: Supervisor, client: Client, artifact: Artifact, env: dict[str, str]) -> int:
    """Restore into a scratch database and compare every table's row count.

    Counts are taken from the source after the dump, so concurrent writes to the
    source make this check fail (documented: use it on quiet databases).
    Returns the number of tables compared.
    """
    scratch = f"learnops_verify_{secrets.token_hex(6)}"
    variables = {"scratch": scratch}
    try:
        psql_script(sup, client, env, query("create_scratch_database"), variables=variables)
    except VerificationFailed as exc:
        raise VerificationFailed(f"cannot create the scratch database: {exc.message}") from None
    try:
        scratch_env = {**env, "PGDATABASE": scratch}
        restore_into(sup, client, artifact, scratch_env, scratch=True)
        expected = row_counts(sup, client, env)
        actual = row_counts(sup, client, scratch_env)
    finally:
        # also after a timeout or SIGTERM: a scratch database must not outlive the run
        argv = [client.tool("psql"), "-X", "-q", "-w", "-v", f"scratch={scratch}", "-f", "-"]
        sup.run_cleanup(argv, env, query("drop_scratch_database").encode())
    if expected != actual:
        diff = sorted(
            f"{t}: source {expected.get(t)} restored {actual.get(t)}"
            for t in expected.keys() | actual.keys()
            if expected.get(t) != actual.get(t)
        )
        raise VerificationFailed("row counts differ after restore: " + "; ".join(diff[:5]))
    log.info(
        "restore verification passed",
        extra={"event": "verify.restore", "tables": len(expected)},
    )
    return len(expected)


def artifact_path(root: Path | None, name: str) -> Path:
    """ARTIFACT as given, or relative to the storage root."""
    path = Path(name)
    if not path.is_absolute() and root is not None and not path.exists():
        path = root / name
    return path
