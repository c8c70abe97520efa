"""The worker image, run like a restricted pod: non-root, read-only root, Secret volume."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

from tests.harness.containers import Engine
from tests.harness.net import free_port, wait_port
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import enqueue, scalar

SECRET_DIR = "/var/run/secrets/learnops/db"
FS_GROUP = 2000


def secret_kwargs(engine: Engine, conn: Conn, **env: str) -> dict[str, object]:
    volume = engine.secret_volume({"DATABASE_URL": conn.url()}, fs_group=FS_GROUP)
    return {
        "group_add": [FS_GROUP],
        "mounts": [(volume, SECRET_DIR, True)],
        "env": {"DATABASE_URL_FILE": f"{SECRET_DIR}/DATABASE_URL", **env},
    }


def test_the_image_migrates_and_processes_jobs_as_non_root_on_a_read_only_root(
    container_engine: Engine, worker_image: str, pg_db: Conn
) -> None:
    kw = secret_kwargs(container_engine, pg_db)
    migrated = container_engine.run(worker_image, ["migrate"], timeout=60, **kw)
    assert migrated.returncode == 0, migrated.stderr
    submission = {
        "task_prompt": "Explain locks.",
        "rubric": {"keywords": ["lock", "transaction"], "points": 2},
        "answer": "A lock protects a row inside a transaction.",
    }
    ids = enqueue(pg_db, "feedback", [submission] * 5) + enqueue(pg_db, "noop", [{}] * 20)
    port = free_port()
    name = f"learnops-worker-{uuid.uuid4().hex[:8]}"
    run_kw = secret_kwargs(
        container_engine, pg_db, WORKER_HTTP_PORT=str(port), WORKER_CONCURRENCY="8",
        WORKER_SHUTDOWN_TIMEOUT_SECONDS="5",
    )  # fmt: skip
    argv = container_engine.run_argv(worker_image, [], detach=True, name=name, **run_kw)  # type: ignore[arg-type]
    subprocess.run(argv, check=True, capture_output=True)
    try:
        wait_port(port, 30)
        wait_for(
            lambda: (
                scalar(pg_db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'")
                == len(ids)
            ),
            60,
            "the container to process every job",
            every=0.05,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "learnops_worker_concurrency 4.0" in r.read().decode()  # clamped
        stopped = subprocess.run(
            ["docker", "stop", "-t", "20", name], capture_output=True, check=False
        )
        assert stopped.returncode == 0
        code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=True)
        assert code == "0", logs.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    result = scalar(pg_db, "SELECT result FROM learnops_jobs WHERE id = %s", ids[0])
    assert result["score"] == 2.0
    events = [
        json.loads(line)["event"] for line in logs.stderr.splitlines() if line.startswith("{")
    ]
    assert "config.warning" in events  # the clamp names its cap
    assert "worker.stopped" in events
    assert pg_db.password not in logs.stdout + logs.stderr


def test_the_image_runs_as_65532_with_nothing_to_install_or_write(
    container_engine: Engine, worker_image: str
) -> None:
    probe = (
        "import os, shutil, sys; print(os.getuid(), os.getgid());"
        "print([t for t in ('uv', 'pip', 'gcc', 'cc', 'apt', 'dpkg') if shutil.which(t)]);"
        "sys.stdout.flush()\n"
        "try:\n open('/opt/venv/x', 'w')\nexcept OSError as e: print('readonly', e.errno)\n"
    )
    ran = container_engine.run(worker_image, ["-c", probe], entrypoint="python3", timeout=60)
    assert ran.returncode == 0, ran.stderr
    uid_line, tools, write = ran.stdout.splitlines()
    assert uid_line == "65532 65532"
    assert tools == "[]"
    assert write.startswith("readonly")
    inspected = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Config}}", worker_image],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    config = json.loads(inspected.stdout)
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["learning-worker"]
    assert config["Cmd"] == ["run"]


def test_a_config_error_in_the_container_exits_2(
    container_engine: Engine, worker_image: str
) -> None:
    ran = container_engine.run(worker_image, ["run"], env={"WORKER_CONCURRENCY": "0"}, timeout=60)
    assert ran.returncode == 2
    assert "WORKER_CONCURRENCY must be at least 1" in ran.stderr
