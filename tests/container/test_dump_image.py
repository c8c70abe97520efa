"""The dump image, run like a restricted pod: non-root, read-only root, Secret volume, limits."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.harness.containers import RUNTIME_UID, Engine
from tests.harness.dumpimage import CI_MAJORS
from tests.harness.postgres import SUPPORTED_MAJORS, Conn, PgCluster
from tests.support.dump import (
    ProcSampler,
    create_dump_role,
    files_containing,
    locked,
    pgpass_line,
    secret_forms,
    table_checksums,
)

FS_GROUP = 2000
SECRET_DIR = "/var/run/secrets/learnops/db"


class Pod:
    """Host-side volumes for one run: Secret (pgpass), backup PVC, termination log."""

    def __init__(self, engine: Engine, conn: Conn) -> None:
        self.engine, self.conn = engine, conn
        self.secret = engine.secret_volume({"pgpass": pgpass_line(conn)}, fs_group=FS_GROUP)
        self.backup = engine.writable_dir(RUNTIME_UID, FS_GROUP)
        self.termlog = self.backup.parent / f"{self.backup.name}-termination-log"
        self.termlog.touch()
        os.chown(self.termlog, RUNTIME_UID, FS_GROUP)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PGHOST": self.conn.host,
            "PGPORT": str(self.conn.port),
            "PGDATABASE": self.conn.dbname,
            "PGUSER": self.conn.user,
            "PGPASSFILE": f"{SECRET_DIR}/pgpass",
            "BACKUP_STORAGE_ROOT": "/backup",
            "BACKUP_PREFIX": "nightly",
            **extra,
        }

    def kwargs(self, **extra: str) -> dict[str, object]:
        return {
            "group_add": [FS_GROUP],
            "mounts": [
                (self.secret, SECRET_DIR, True),
                (self.backup, "/backup", False),
                (self.termlog, "/dev/termination-log", False),
            ],
            "env": self.env(**extra),
        }

    def termination(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.termlog.read_text())
        return data


@pytest.fixture
def pod(container_engine: Engine, pg_cluster: PgCluster, pg_db: Conn) -> Pod:
    return Pod(container_engine, create_dump_role(pg_cluster, pg_db.dbname))


def test_the_image_backs_up_with_a_secret_volume_pgpass_as_non_root(
    container_engine: Engine, dump_image: str, pod: Pod
) -> None:
    with ProcSampler(secret_forms(pod.conn.password)) as sampler:
        ran = container_engine.run(dump_image, [], timeout=120, **pod.kwargs())
    assert ran.returncode == 0, ran.stderr
    term = pod.termination()
    assert term["status"] == "ok"
    assert term["clientVersion"] == "15.18" or str(term["clientVersion"]).startswith("15")
    artifact = pod.backup / str(term["artifact"])
    assert artifact.stat().st_uid == RUNTIME_UID
    assert str(term["artifact"]).startswith("nightly-")
    manifest = json.loads((pod.backup / "nightly.latest.json").read_text())
    assert manifest["credentialSource"] == "PGPASSFILE"
    # canary: argv/environ of every process (container processes included), output, files
    assert sampler.hits == []
    assert not any(s in ran.stdout + ran.stderr for s in secret_forms(pod.conn.password))
    assert files_containing(pod.backup, secret_forms(pod.conn.password)) == []
    assert not any(s in pod.termlog.read_text() for s in secret_forms(pod.conn.password))


def test_the_image_stays_within_a_memory_limit_far_below_the_database_size(
    container_engine: Engine, dump_image: str, pg_cluster: PgCluster, big_db: str
) -> None:
    pod = Pod(container_engine, create_dump_role(pg_cluster, big_db, createdb=False))
    assert pg_cluster.database_size(big_db) > 8 * 64 * 2**20
    ran = container_engine.run(
        dump_image, [], timeout=600, memory="64m",
        **pod.kwargs(BACKUP_COMPRESSION="zstd:1", BACKUP_TIMEOUT_SECONDS="500"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert pod.termination()["status"] == "ok"


def test_docker_stop_is_handled_by_pid_1_like_the_deadline(
    container_engine: Engine, dump_image: str, pod: Pod, pg_cluster: PgCluster
) -> None:
    """activeDeadlineSeconds sends SIGTERM to PID 1: failed manifest, exit 5, in time."""
    name = f"learnops-dump-stop-{os.getpid()}"
    argv = container_engine.run_argv(dump_image, [], name=name, detach=True, **pod.kwargs())  # type: ignore[arg-type]
    with locked(pg_cluster, pod.conn.dbname):
        subprocess.run(argv, check=True, capture_output=True)
        try:
            time.sleep(3)  # connected, pg_dump blocked on the lock
            started = time.monotonic()
            subprocess.run(["docker", "stop", "-t", "30", name], check=True, capture_output=True)
            elapsed = time.monotonic() - started
            code = subprocess.run(
                ["docker", "wait", name], check=True, capture_output=True, text=True
            ).stdout.strip()
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    assert code == "5"
    assert elapsed < 15
    term = pod.termination()
    assert (term["status"], term["reason"]) == ("failed", "Timeout")
    assert "SIGTERM" in str(term["message"])
    names = [n for n in os.listdir(pod.backup) if n != ".nightly.lock"]  # the prefix lock
    assert len(names) == 1
    assert names[0].endswith(".manifest.json")


def test_the_image_has_no_compiler_a_numeric_user_and_root_owned_code(
    container_engine: Engine, dump_image: str
) -> None:
    inspect = subprocess.run(
        ["docker", "image", "inspect", dump_image], check=True, capture_output=True, text=True
    )
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["User"].split(":")[0].isdigit()
    assert config["Entrypoint"] == ["learnops-dump"]
    assert config["Cmd"] == ["run"]
    script = (
        "for c in gcc cc c++ clang make pip pip3; do command -v $c && echo FOUND $c; done;"
        "stat -c '%u %a' /usr/lib/python3/dist-packages/learnops_dump/cli.py;"
        "ls /usr/lib/python3/dist-packages/learnops_dump/__pycache__ | grep -c pyc;"
        "ls /usr/lib/postgresql/*/bin/pg_dump;"
        "for t in zstd lz4 gzip; do command -v $t; done | wc -l;"
        "ls /var/lib/apt/lists | wc -l"
    )
    ran = container_engine.run(dump_image, ["-c", script], entrypoint="/bin/sh")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FOUND")]
    owner, mode = lines[0].split()
    assert owner == "0"
    assert not int(mode, 8) & 0o022
    assert int(lines[1]) > 10  # bytecode compiled at build time
    for major in CI_MAJORS:  # every supported major that has a client build
        assert f"/usr/lib/postgresql/{major}/bin/pg_dump" in lines
    assert lines[-2] == "3"
    assert lines[-1] == "0"
    helped = container_engine.run(dump_image, ["--help"])
    assert "BACKUP_STORAGE_ROOT" in helped.stdout


@pytest.mark.parametrize("major", SUPPORTED_MAJORS)
def test_the_image_backs_up_and_restores_every_supported_major_with_its_bundled_client(
    container_engine: Engine, dump_image: str, pg_majors: Callable[[int], PgCluster], major: int
) -> None:
    """What CI builds (clients 14-18): each server major dumped and restored by the image."""
    cluster = pg_majors(major)
    source = f"img_{secrets.token_hex(3)}"
    cluster.create_database(source)
    pod = Pod(container_engine, create_dump_role(cluster, source))
    ran = container_engine.run(dump_image, [], timeout=120, **pod.kwargs())
    assert ran.returncode == 0, ran.stderr[-2000:]
    term = pod.termination()
    client = min(m for m in CI_MAJORS if m >= major)
    assert str(term["serverVersion"]).startswith(f"{major}.")
    assert str(term["clientVersion"]).startswith(f"{client}.")
    target = f"img_restored_{secrets.token_hex(3)}"
    with cluster.connect() as c:
        c.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
    admin = Pod(container_engine, cluster.admin.with_db(target))
    admin.backup = pod.backup  # the same PVC
    restored = container_engine.run(
        dump_image,
        ["restore", str(term["artifact"]), "--target-db", target, "--allow-other-source"],
        timeout=120,
        **admin.kwargs(),
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr[-2000:]
    assert table_checksums(cluster, target) == table_checksums(cluster, source)


def test_the_image_refuses_a_server_newer_than_its_clients_with_exit_8(
    container_engine: Engine, dump_image: str, pg_majors: Callable[[int], PgCluster]
) -> None:
    """The image's own clients without 18 (as an image built before 18 has) against 18."""
    cluster = pg_majors(max(SUPPORTED_MAJORS))
    source = f"img_new_{secrets.token_hex(3)}"
    cluster.create_database(source)
    pod = Pod(container_engine, create_dump_role(cluster, source))
    older = ":".join(f"/usr/lib/postgresql/{m}/bin" for m in CI_MAJORS if m < 18)
    ran = container_engine.run(
        dump_image, [], timeout=120, **pod.kwargs(BACKUP_PG_CLIENT_DIRS=older)
    )
    assert ran.returncode == 8
    term = pod.termination()
    assert term["reason"] == "VersionMismatch"
    assert "server major 18 is newer than every installed pg_dump (newest 17" in str(
        term["message"]
    )


def test_the_image_writes_globals_and_several_databases_in_one_run(
    container_engine: Engine, dump_image: str, pg_majors: Callable[[int], PgCluster]
) -> None:
    cluster = pg_majors(max(SUPPORTED_MAJORS))
    names = [f"img_a_{secrets.token_hex(3)}", f"img_b_{secrets.token_hex(3)}"]
    for name in names:
        cluster.create_database(name)
    pod = Pod(container_engine, create_dump_role(cluster, names[0]))
    with cluster.connect() as c:
        c.execute(f'GRANT CONNECT ON DATABASE "{names[1]}" TO "{pod.conn.user}"')
    ran = container_engine.run(
        dump_image, [], timeout=120,
        **pod.kwargs(BACKUP_DATABASES=json.dumps(names), BACKUP_GLOBALS="true"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    term = pod.termination()
    assert [d["database"] for d in term["databases"]] == names  # type: ignore[attr-defined]
    assert term["globals"]["rolePasswords"] is False  # type: ignore[index]
    for entry in [*term["databases"], term["globals"]]:  # type: ignore[misc]
        assert (pod.backup / entry["artifact"]).is_file()
    assert "SCRAM-SHA-256$" not in (pod.backup / term["globals"]["artifact"]).read_text()  # type: ignore[index]
