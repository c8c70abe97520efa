"""Restoring ≈ 1 GB through a DatabaseRestore (operator → Job → dump pod → pg_restore → row-count
check → status) against a bare pg_restore of the same artifact, side by side in alternating
rounds; and a directory-format artifact restored with 1 and with 4 parallel jobs.

Figures are printed (make bench); the only assertion is the ratio bound the issue sets, on the
median of the rounds, against a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_dump import pgpass_line
from tests.fixtures_operator import Namespace, OperatorProcess, wait_for
from tests.harness.containers import RUNTIME_UID, Engine
from tests.harness.dumpimage import build_dump_image
from tests.harness.podrunner import PodRunner
from tests.harness.postgres import Conn, PgCluster

REPO = Path(__file__).resolve().parents[2]
DUMP_IMAGE = "learnops/dump:e2e"
ROUNDS = 5
BIN = "/usr/lib/postgresql/15/bin"
MAX_RATIO = 1.10


@pytest.fixture(scope="module")
def dump_image(container_engine: Engine) -> str:
    return build_dump_image(container_engine, DUMP_IMAGE)


def _dump(source: Conn, storage: Path, tmp: Path, prefix: str, **env: str) -> dict[str, Any]:
    pgpass = tmp / "source-pgpass"
    pgpass.write_text(pgpass_line(source))
    pgpass.chmod(0o600)
    run_env = {
        "PATH": os.environ["PATH"],
        "PGHOST": source.host,
        "PGPORT": str(source.port),
        "PGDATABASE": source.dbname,
        "PGUSER": source.user,
        "PGPASSFILE": str(pgpass),
        "PGSSLMODE": "disable",
        "BACKUP_STORAGE_ROOT": str(storage),
        "BACKUP_PREFIX": prefix,
        "BACKUP_TERMINATION_LOG": str(tmp / f"{prefix}-termination-log"),
        "BACKUP_TIMEOUT_SECONDS": "3000",
        "TMPDIR": str(tmp),
        **env,
    }
    subprocess.run(["learnops-dump", "run"], env=run_env, check=True, capture_output=True)
    for path in [storage, *storage.rglob("*")]:
        os.chown(path, RUNTIME_UID, RUNTIME_UID)
    manifest: dict[str, Any] = json.loads((storage / f"{prefix}.latest.json").read_text())
    return manifest


def _through_resource(ns: Namespace, artifact: str, dbname: str, jobs: int) -> float:
    name = f"bench-{secrets.token_hex(3)}"
    started = time.perf_counter()
    ns.apply(
        {
            "apiVersion": "learnops.io/v1alpha1",
            "kind": "DatabaseRestore",
            "metadata": {"name": name},
            "spec": {
                "source": {
                    "storage": {
                        "persistentVolumeClaim": {"claimName": "backups"},
                        "artifact": artifact,
                    }
                },
                "target": {
                    "urlSecretRef": {"name": "bench-target"},
                    "sslMode": "disable",
                    "dbname": dbname,
                    "policy": "create",
                },
                "options": {"jobs": jobs},
                "timeoutSeconds": 3600,
                "resources": {"limits": {"memory": "512Mi"}},
                "image": DUMP_IMAGE,
                "imagePullPolicy": "Never",
            },
        }
    )
    status: dict[str, Any] = wait_for(
        lambda: (
            (s := (ns.get("dbr", name) or {}).get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        3600,
        f"{name} to finish",
    )
    elapsed = time.perf_counter() - started
    assert status["phase"] == "Succeeded", status
    assert status["parallelJobs"] == jobs
    return elapsed


def _bare(target: PgCluster, artifact: Path, dbname: str, tmp: Path) -> float:
    admin = target.admin
    pgpass = tmp / "bare-pgpass"
    pgpass.write_text(pgpass_line(Conn(admin.host, admin.port, admin.user, admin.password, "*")))
    pgpass.chmod(0o600)
    env = {
        "PATH": "/usr/bin:/bin",
        "PGHOST": admin.host,
        "PGPORT": str(admin.port),
        "PGUSER": admin.user,
        "PGPASSFILE": str(pgpass),
    }
    started = time.perf_counter()
    subprocess.run([f"{BIN}/createdb", "-T", "template0", dbname], env=env, check=True)
    restore = [f"{BIN}/pg_restore", "--exit-on-error", "-d", dbname]
    if artifact.name.endswith(".zst"):
        with subprocess.Popen(["zstd", "-dcq", str(artifact)], stdout=subprocess.PIPE) as unzip:
            subprocess.run(restore, env=env, stdin=unzip.stdout, check=True)
        assert unzip.returncode == 0
    else:
        subprocess.run([*restore, str(artifact)], env=env, check=True)
    return time.perf_counter() - started


def test_restore_through_a_database_restore_vs_bare_pg_restore(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pod_runner: PodRunner | None,
    dump_image: str,
    pg_cluster: PgCluster,
    bench_db: str,
    scratch_cluster: PgCluster,
    tmp_path: Path,
) -> None:
    if pod_runner is None:
        pytest.skip("the artifact is written into the kubelet stand-in's PVC directory")
    storage = pod_runner.pvc_dir(backup_ns.name, "backups")
    storage.mkdir(parents=True, exist_ok=True)
    admin = scratch_cluster.admin
    url = f"postgresql://{admin.user}:{admin.password}@{admin.host}:{admin.port}/postgres"
    backup_ns.kubectl(
        "create", "secret", "generic", "bench-target", "--from-file=DATABASE_URL=/dev/stdin",
        input=url,
    )  # fmt: skip
    source = pg_cluster.admin.with_db(bench_db)
    size = pg_cluster.database_size(bench_db)
    custom = _dump(source, storage, tmp_path, "custom")
    artifact = custom["artifact"]
    resource_times, bare_times = [], []
    for i in range(ROUNDS):  # alternating which goes first, so drift hits both alike
        for side in ("bare", "resource") if i % 2 == 0 else ("resource", "bare"):
            if side == "bare":
                bare_times.append(_bare(scratch_cluster, storage / artifact, f"bare_{i}", tmp_path))
            else:
                resource_times.append(_through_resource(backup_ns, artifact, f"{side}_{i}", 1))
            scratch_cluster.drop_database(f"{side}_{i}")
    ratios = [r / b for r, b in zip(resource_times, bare_times, strict=True)]
    directory = _dump(source, storage, tmp_path, "directory", BACKUP_FORMAT="directory",
                      BACKUP_COMPRESSION="gzip:1")  # fmt: skip
    one = _through_resource(backup_ns, directory["artifact"], "dir_1", 1)
    scratch_cluster.drop_database("dir_1")
    four = _through_resource(backup_ns, directory["artifact"], "dir_4", 4)
    scratch_cluster.drop_database("dir_4")
    print(
        f"\nrestore of a {size / 2**30:.2f} GiB database ({custom['sizeBytes'] / 2**20:.0f} MiB "
        f"artifact {artifact}), {ROUNDS} alternating rounds:\n"
        f"  DatabaseRestore (pod, sha256 + row-count check): "
        f"{', '.join(f'{t:.1f}' for t in resource_times)} s\n"
        f"  bare pg_restore of the same artifact:            "
        f"{', '.join(f'{t:.1f}' for t in bare_times)} s\n"
        f"  ratio per round {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.3f}\n"
        f"directory format ({directory['sizeBytes'] / 2**20:.0f} MiB): 1 job {one:.1f} s, "
        f"4 jobs {four:.1f} s, speed-up {one / four:.2f}x"
    )
    assert statistics.median(ratios) <= MAX_RATIO
