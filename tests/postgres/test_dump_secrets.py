"""Credentials: Secret-volume pgpass as a non-root uid, URL sources and their priority."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.postgres import Conn, PgCluster
from tests.harness.wait import wait_for
from tests.support.dump import (
    DUMP_SRC,
    DumpWorld,
    ProcSampler,
    canary_password,
    create_dump_role,
    files_containing,
    locked,
    pgpass_line,
    run_runner,
    secret_forms,
    start_runner,
    url_of,
    wait_for_child,
)

UID, FS_GROUP = 65532, 2000
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under root's 0700 home


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-traversable scratch dir (pytest's tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="learnops-dump-secret-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def kubelet_secret_volume(root: Path, files: dict[str, str]) -> Path:
    """The kubelet's layout: ..<timestamp>/ dir, ..data symlink, key symlinks, root:fsGroup 0440."""
    vol = root / "secret"
    stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    (vol / stamp).mkdir(parents=True)
    for key, content in files.items():
        path = vol / stamp / key
        path.write_text(content)
        os.chown(path, 0, FS_GROUP)
        path.chmod(0o440)
        (vol / key).symlink_to(Path("..data") / key)
    (vol / "..data").symlink_to(stamp)
    for d in (vol, vol / stamp):
        os.chown(d, 0, FS_GROUP)
        d.chmod(0o2755)
    return vol


@pytest.mark.usefixtures("as_root")
def test_a_secret_volume_pgpass_works_for_a_non_root_uid(
    pg_cluster: PgCluster, pg_db: Conn, shared_dir: Path
) -> None:
    conn = create_dump_role(pg_cluster, pg_db.dbname)
    vol = kubelet_secret_volume(shared_dir, {"pgpass": pgpass_line(conn)})
    storage, tmp = shared_dir / "backup", shared_dir / "tmp"
    for d, mode in ((storage, 0o2770), (tmp, 0o700)):
        d.mkdir()
        os.chown(d, UID, FS_GROUP)
        d.chmod(mode)
    termlog = shared_dir / "termination-log"
    termlog.touch()
    os.chown(termlog, UID, FS_GROUP)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(DUMP_SRC),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PGHOST": conn.host,
        "PGPORT": str(conn.port),
        "PGDATABASE": conn.dbname,
        "PGUSER": conn.user,
        "PGPASSFILE": str(vol / "pgpass"),
        "BACKUP_STORAGE_ROOT": str(storage),
        "BACKUP_TERMINATION_LOG": str(termlog),
        "TMPDIR": str(tmp),
    }
    # libpq itself refuses this file: that is the failure the private copy exists for.
    direct = subprocess.run(
        ["/usr/lib/postgresql/15/bin/psql", "-XAtw", "-c", "SELECT 1"],
        env=env, capture_output=True, text=True, check=False,
        user=UID, group=UID, extra_groups=[FS_GROUP],
    )  # fmt: skip
    assert direct.returncode != 0
    assert "permissions should be u=rw" in direct.stderr
    with ProcSampler(secret_forms(conn.password)) as sampler:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-m", "learnops_dump", "run"],
            env=env, capture_output=True, text=True, check=False, timeout=120,
            user=UID, group=UID, extra_groups=[FS_GROUP],
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    term = json.loads(termlog.read_text())
    assert term["status"] == "ok"
    assert (storage / term["artifact"]).stat().st_uid == UID
    assert sampler.hits == []
    assert not any(s in result.stdout + result.stderr for s in secret_forms(conn.password))
    assert files_containing(storage, secret_forms(conn.password)) == []
    assert list(tmp.iterdir()) == []  # the private copy is gone


@pytest.mark.parametrize(
    ("winner", "losers"),
    [
        ("SESSION_DATABASE_URL", ["BACKUP_DATABASE_URL", "DATABASE_URL", "PGPASSFILE"]),
        ("SESSION_DATABASE_URL_FILE", ["BACKUP_DATABASE_URL_FILE", "DATABASE_URL"]),
        ("BACKUP_DATABASE_URL", ["BACKUP_DATABASE_URL_FILE", "DATABASE_URL"]),
        ("DATABASE_URL_FILE", ["PGPASSFILE"]),
    ],
)
def test_the_first_url_source_wins_end_to_end(
    dump_world: DumpWorld, winner: str, losers: list[str]
) -> None:
    """Only the winner holds the right password; every loser a wrong one."""
    right = url_of(dump_world.conn)
    wrong_conn = Conn(**{**dump_world.conn.__dict__, "password": canary_password()})
    wrong = url_of(wrong_conn)
    env = dump_world.env()
    dump_world.pgpass.write_text(pgpass_line(wrong_conn))
    for name, url in [(winner, right), *((loser, wrong) for loser in losers)]:
        if name == "PGPASSFILE":
            continue
        if name.endswith("_FILE"):
            path = dump_world.base / name.lower()
            path.write_text(url + "\n")
            env[name] = str(path)
        else:
            env[name] = url
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    assert f'"source":"{winner}"' in result.stderr
    leaked = [*dump_world.secrets(), *secret_forms(wrong_conn.password)]
    assert not any(s in result.stderr for s in leaked)
    assert files_containing(dump_world.storage, leaked) == []


def test_a_missing_url_file_counts_as_unset(dump_world: DumpWorld) -> None:
    env = dump_world.env(
        SESSION_DATABASE_URL_FILE=str(dump_world.base / "absent"),
        DATABASE_URL=url_of(dump_world.conn),
        PGPASSFILE="",
    )
    result = run_runner(env)
    assert result.returncode == 0, result.stderr
    assert '"source":"DATABASE_URL"' in result.stderr


def test_the_proc_sampler_would_catch_a_leak() -> None:
    """Control for every canary assertion: a secret in argv or environ is seen."""
    secret = canary_password()
    with ProcSampler([secret]) as sampler:
        # each leaky child lives until it was seen: a loaded machine's sampling loop may take
        # longer than any fixed sleep to come round
        for where, argv, env in (
            ("/environ", ["sleep", "120"], {"LEAK": secret}),
            ("/cmdline", ["sh", "-c", "sleep 120", secret], None),
        ):
            child = subprocess.Popen(argv, env=env)

            def seen(where: str = where) -> bool:
                return any(h.endswith(where) for h in sampler.hits)

            try:
                wait_for(seen, 60, f"the sampler to see the secret in {where}")
            finally:
                child.kill()
                child.wait()
    assert any(hit.endswith("/environ") for hit in sampler.hits)
    assert any(hit.endswith("/cmdline") for hit in sampler.hits)


def test_children_never_inherit_a_url_given_in_the_environment(
    dump_world: DumpWorld, pg_cluster: PgCluster
) -> None:
    """A plain DATABASE_URL is in the runner's own environ (the pod spec put it there);
    psql, pg_dump, zstd and pg_restore must not get it."""
    env = dump_world.env(PGPASSFILE="", DATABASE_URL=url_of(dump_world.conn))
    with locked(pg_cluster, dump_world.conn.dbname):  # pg_dump lives long enough to be seen
        proc = start_runner(env)
        with ProcSampler(dump_world.secrets(), ignore_pids=frozenset({proc.pid})) as sampler:
            wait_for_child(proc.pid, "pg_dump")
            time.sleep(0.2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    # pg_dump (held by the lock) proves the sampler saw the children; the runner's psql probe
    # lives a few milliseconds, which a loaded machine's sampling loop can miss.
    assert "pg_dump" in sampler.seen
    assert sampler.hits == []
    assert not any(s.encode() in out + err for s in dump_world.secrets())
