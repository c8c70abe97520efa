"""Restoring ≈ 1 GB the way a DatabaseRestore's Job does, against a bare pg_restore of the same
artifact, side by side in alternating rounds; and a directory-format artifact restored with 1 and
with 4 parallel jobs.

The restore side runs exactly the container the operator builds (jobpods.restore_job: its args and
env, with the pod's paths mapped onto this host's directories): sha256 against the manifest,
policy, source guard, pg_restore, every table's row count against the manifest, the summary. It
runs on this host against the second PostgreSQL cluster, like the bare side, so what is compared is
the runner's work, timed to the sub-second, with no cluster needed; the pod around it (scheduling,
image start, the operator's status write) is measured on kind by test_restore_kind_bench.py.

Figures are printed (make bench); the only assertion is the ratio bound the issue sets, on the
median of the rounds, against a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from learnops_operator import builders, jobpods
from learnops_operator.restorespec import Storage, parse_restore

from tests.harness.postgres import Conn, PgCluster
from tests.support.dump import pgpass_line

ROUNDS = 3
MAX_RATIO = 1.10


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
    manifest: dict[str, Any] = json.loads((storage / f"{prefix}.latest.json").read_text())
    return manifest


def _job_command(
    target: Conn, artifact: str, prefix: str, dbname: str, jobs: int, storage: Path, tmp: Path
) -> tuple[list[str], dict[str, str]]:
    """The DatabaseRestore Job's container (args, env), its pod paths mapped onto this host."""
    spec = parse_restore(
        {
            "source": {
                "storage": {
                    "persistentVolumeClaim": {"claimName": "backups"},
                    "artifact": artifact,
                    "prefix": prefix,
                }
            },
            "target": {
                "host": target.host,
                "port": target.port,
                "user": target.user,
                "sslMode": "disable",
                "pgpassSecretRef": {"name": "bench-target"},
                "dbname": dbname,
                "policy": "create",
            },
            "options": {"jobs": jobs},
            "timeoutSeconds": 3600,
        }
    )
    job = jobpods.restore_job(
        "bench", "bench", "0", 1, spec, Storage("backups", None, prefix), "learnops/dump"
    )
    [container] = job["spec"]["template"]["spec"]["containers"]
    secrets = tmp / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "pgpass").write_text(pgpass_line(target, "*"))
    (secrets / "pgpass").chmod(0o600)
    paths = {
        builders.SECRET_DIR: str(secrets),
        builders.STORAGE_ROOT: str(storage),
        builders.TERMINATION_LOG: str(tmp / "termination-log"),
        builders.TMP_DIR: str(tmp),
    }
    env = {"PATH": os.environ["PATH"]}
    for item in container["env"]:
        value = str(item["value"])
        for inside, outside in paths.items():
            if value == inside or value.startswith(inside + "/"):
                value = outside + value[len(inside) :]
                break
        env[item["name"]] = value
    return ["learnops-dump", *container["args"]], env


def _through_job_command(
    target: Conn, artifact: str, prefix: str, dbname: str, jobs: int, storage: Path, tmp: Path
) -> tuple[float, dict[str, Any]]:
    argv, env = _job_command(target, artifact, prefix, dbname, jobs, storage, tmp)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = json.loads((tmp / "termination-log").read_text())
    assert proc.returncode == 0, (summary, proc.stderr[-2000:])
    assert summary["parallelJobs"] == jobs
    assert summary["mismatches"] == []
    assert summary["tablesChecked"] >= 4
    return elapsed, summary


def _bare(target: PgCluster, artifact: Path, dbname: str, tmp: Path) -> float:
    admin = target.admin
    pgpass = tmp / "bare-pgpass"
    pgpass.write_text(pgpass_line(admin, "*"))
    pgpass.chmod(0o600)
    bindir = target.bindir
    env = {
        "PATH": "/usr/bin:/bin",
        "PGHOST": admin.host,
        "PGPORT": str(admin.port),
        "PGUSER": admin.user,
        "PGPASSFILE": str(pgpass),
    }
    started = time.perf_counter()
    subprocess.run([f"{bindir}/createdb", "-T", "template0", dbname], env=env, check=True)
    restore = [f"{bindir}/pg_restore", "--exit-on-error", "-d", dbname]
    if artifact.name.endswith(".zst"):
        with subprocess.Popen(["zstd", "-dcq", str(artifact)], stdout=subprocess.PIPE) as unzip:
            subprocess.run(restore, env=env, stdin=unzip.stdout, check=True)
        assert unzip.returncode == 0
    elif artifact.name.endswith(".gz"):
        with subprocess.Popen(["gzip", "-dc", str(artifact)], stdout=subprocess.PIPE) as unzip:
            subprocess.run(restore, env=env, stdin=unzip.stdout, check=True)
        assert unzip.returncode == 0
    else:
        subprocess.run([*restore, str(artifact)], env=env, check=True)
    return time.perf_counter() - started


@pytest.mark.timeout(3600)  # ≈ 1 GB restored eight times, beside other work
def test_restore_through_a_database_restore_job_vs_bare_pg_restore(
    pg_cluster: PgCluster, bench_db: str, scratch_cluster: PgCluster, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    source = pg_cluster.admin.with_db(bench_db)
    size = pg_cluster.database_size(bench_db)
    load = os.getloadavg()
    custom = _dump(source, storage, tmp_path, "custom")
    artifact = custom["artifact"]
    resource_times: list[float] = []
    bare_times: list[float] = []
    for i in range(ROUNDS):  # alternating which goes first, so drift hits both alike
        for side in ("bare", "job") if i % 2 == 0 else ("job", "bare"):
            db = f"{side}_{i}"
            if side == "bare":
                bare_times.append(_bare(scratch_cluster, storage / artifact, db, tmp_path))
            else:
                elapsed, _ = _through_job_command(
                    scratch_cluster.admin, artifact, "custom", db, 1, storage, tmp_path
                )
                resource_times.append(elapsed)
            scratch_cluster.drop_database(db)
    ratios = [r / b for r, b in zip(resource_times, bare_times, strict=True)]
    directory = _dump(
        source, storage, tmp_path, "directory", BACKUP_FORMAT="directory",
        BACKUP_COMPRESSION="gzip:1",
    )  # fmt: skip
    one, _ = _through_job_command(
        scratch_cluster.admin, directory["artifact"], "directory", "dir_1", 1, storage, tmp_path
    )
    scratch_cluster.drop_database("dir_1")
    four, _ = _through_job_command(
        scratch_cluster.admin, directory["artifact"], "directory", "dir_4", 4, storage, tmp_path
    )
    scratch_cluster.drop_database("dir_4")
    print(
        f"\nrestore of a {size / 2**30:.2f} GiB database ({custom['sizeBytes'] / 2**20:.0f} MiB "
        f"artifact {artifact}), {ROUNDS} alternating rounds, load average before "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + ":\n"
        f"  DatabaseRestore Job's command (sha256 + policy + row-count check): "
        f"{', '.join(f'{t:.1f}' for t in resource_times)} s\n"
        f"  bare pg_restore of the same artifact:                              "
        f"{', '.join(f'{t:.1f}' for t in bare_times)} s\n"
        f"  ratio per round {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.3f}\n"
        f"directory format ({directory['sizeBytes'] / 2**20:.0f} MiB): 1 job {one:.1f} s, "
        f"4 jobs {four:.1f} s, speed-up {one / four:.2f}x"
    )
    assert statistics.median(ratios) <= MAX_RATIO
