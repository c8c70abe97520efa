"""Restoring ≈ 1 GB through a real DatabaseRestore pod on kind, against a bare pg_restore pod of the
same artifact, side by side in alternating rounds; and a directory-format backup restored by
DatabaseRestore with 1 and with 4 parallel jobs.

The platform is the e2e tier's: the session kind cluster with PostgreSQL as a pod and a second
PostgreSQL pod as the restore target (tests/conftest.py `platform`, `scratch_pod`), and the
operator as a process holding its ServiceAccount's token (tests/support/kind_tier.py gives the
`operator` and `backup_ns` fixtures that cluster). pgbench rows are backed up once by a
DatabaseBackup (`learnops.io/backup-now`, custom format, zstd) onto the namespace's PVC. Each round
restores that artifact (a) through a DatabaseRestore (policy create, a new database) and (b)
through a bare Job whose pod is the restore Job's own pod (`jobpods.restore_job`: same image, node,
read-only PVC, Secret-mounted pgpass, restricted securityContext, resources) with its command
replaced by `zstd -dc ARTIFACT | pg_restore -d DB` plus the two steps it cannot do without:
CREATE DATABASE, and a 0600 copy of the pgpass (libpq ignores the Secret's group-readable file).

The bare side runs in the dump image because the PostgreSQL pod image
(tests/harness/postgres-image) has sh and pg_restore but no zstd binary (Debian's postgresql-15
needs only libzstd) and the artifact is zstd; the dump image has bash, zstd and the pg_restore 15
that the runner itself picks for a 15 server, so only the command differs.

Compared is each container's run (its status startedAt -> finishedAt, whole seconds, on both
sides); create -> phase Succeeded (the bare Job: -> Complete) is printed too, the overhead of
scheduling, image start and the operator's status write. Peak memory is the pod cgroup's
high-water mark read on the node (no metrics-server in the cluster, so no `kubectl top`).
Figures are printed (make bench); the only assertion is the issue's bound on the median ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from learnops_operator import builders, jobpods
from learnops_operator.restorespec import Storage, parse_restore

from tests.harness.platform import Platform
from tests.harness.podpostgres import PodPostgres
from tests.support import kind_tier, restores
from tests.support.operator import DUMP_IMAGE, Namespace, OperatorProcess

# The cluster fixtures of this module are the kind platform's, so `namespace`, `backup_ns` and
# `operator` (tests/conftest.py) run there; the other benchmarks keep the host's.
kube_cluster = kind_tier.kube_cluster
operator_kubeconfig = kind_tier.operator_kubeconfig

ROUNDS = 3
MAX_RATIO = 1.10
SCALE = 68  # pgbench scale factor: ≈ 1 GB with the sample tables
WATCH_SECONDS = 1800  # for one backup or restore of ≈ 1 GB, beside other work
# The client the runner picks for the 15 server in the dump image (learnops_dump.versions).
CLIENT_BIN = "/usr/lib/postgresql/15/bin"
BARE_LABELS = {"app.kubernetes.io/name": "bare-restore"}  # not the operator's: it ignores the Job
BARE_SCRIPT = """set -euo pipefail
install -m 600 "$PGPASSFILE" /tmp/pgpass
export PGPASSFILE=/tmp/pgpass
"$3/psql" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \\"$1\\" TEMPLATE template0"
zstd -dcq "$2" | "$3/pg_restore" --exit-on-error --no-owner -d "$1"
"""
# Run on the node: the high-water mark of the pod's memory cgroup (v2 memory.peak, v1
# memory.max_usage_in_bytes; both include page cache), printed every 0.5 s while the cgroup
# exists, until our end of stdin closes. $1 is the pod uid, $2 the same with underscores (the
# systemd cgroup driver's slice names).
PEAK_SCRIPT = """file=""
for _ in $(seq 600); do
  for dir in $(find /sys/fs/cgroup -maxdepth 8 -type d \\( -name "*pod$1*" -o -name "*pod$2*" \\)
  ); do
    for f in memory.peak memory.max_usage_in_bytes; do [ -e "$dir/$f" ] && file="$dir/$f"; done
  done
  [ -n "$file" ] && break
  read -r -t 0.5 _; [ $? -gt 128 ] || exit 0
done
while [ -n "$file" ] && [ -e "$file" ]; do
  cat "$file" 2>/dev/null || true
  read -r -t 0.5 _; [ $? -gt 128 ] || break
done
"""


class PeakMemory:
    """Follows one Job's pod on the node from its creation until stop()."""

    def __init__(self, platform: Platform, ns: Namespace, job: str) -> None:
        self.platform, self.ns, self.job = platform, ns, job
        self.peak: int | None = None
        self._stopped = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        uid = ""
        while not uid and not self._stopped.wait(0.5):
            uid = self.ns.kubectl(
                "get", "pods", "-l", f"job-name={self.job}",
                "-o", "jsonpath={.items[0].metadata.uid}", check=False,
            )  # fmt: skip
        if not uid:
            return
        with subprocess.Popen(
            ["docker", "exec", "-i", self.platform.kind.node, "bash", "-c", PEAK_SCRIPT, "peak",
             uid, uid.replace("-", "_")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        ) as proc:  # fmt: skip
            self._proc = proc
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip().isdigit():
                    self.peak = max(self.peak or 0, int(line))

    def stop(self) -> int | None:
        self._stopped.set()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        self._thread.join(30)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        return self.peak


def _watch(ns: Namespace, resource: str, template: str, done: Callable[[str], bool]) -> str:
    """The first value of `template` (a kubectl jsonpath) that `done` accepts, from a watch, so
    nothing polls the API server while a restore runs."""
    kube = ns.cluster
    argv = [
        str(kube.kubectl_path), f"--kubeconfig={kube.kubeconfig}", "get", resource, "-n", ns.name,
        "-w", "-o", f'jsonpath={template}{{"\\n"}}',
    ]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        timer = threading.Timer(WATCH_SECONDS, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if done(line.strip()):
                    return line.strip()
        finally:
            timer.cancel()
            proc.kill()
    raise AssertionError(f"the watch of {resource} ended before it finished")


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _pod_run(ns: Namespace, job: str) -> tuple[float, float]:
    """(container run, pod start -> container finish) in seconds, from the pod's status."""
    [pod] = ns.items("pods", f"job-name={job}")
    [term] = [
        cs["state"]["terminated"]
        for cs in pod["status"]["containerStatuses"]
        if cs["name"] == builders.CONTAINER_NAME
    ]
    finished = _when(term["finishedAt"])
    run = (finished - _when(term["startedAt"])).total_seconds()
    return run, (finished - _when(pod["status"]["startTime"])).total_seconds()


def _through_restore(
    platform: Platform, ns: Namespace, name: str, target: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """A DatabaseRestore run to its end: its status and the timings of its pod."""
    started = time.perf_counter()
    restores.declare_restore(ns, name, target, **spec)
    job = jobpods.restore_job_name(name, 1)
    memory = PeakMemory(platform, ns, job)
    phase = _watch(ns, f"dbr/{name}", "{.status.phase}", lambda p: p in ("Succeeded", "Failed"))
    wall = time.perf_counter() - started
    peak = memory.stop()
    st = restores.finished_restore(ns, name)
    assert phase == "Succeeded", st
    assert st is not None
    run, pod = _pod_run(ns, job)
    return {"run": run, "pod": pod, "wall": wall, "peak": peak, "status": st}


def _bare_job(ns: Namespace, name: str, target: dict[str, Any], artifact: str) -> dict[str, Any]:
    """The restore Job's pod with only its command changed (module docstring)."""
    spec = parse_restore(
        {
            "source": {"backupRef": {"name": "nightly"}},
            "target": target,
            "image": DUMP_IMAGE,
            "imagePullPolicy": "Never",
        }
    )
    job = jobpods.restore_job(
        ns.name, name, "", 1, spec, Storage("backups", None, "nightly"), DUMP_IMAGE
    )
    job["metadata"] = {"name": name, "namespace": ns.name, "labels": BARE_LABELS}
    template = job["spec"]["template"]
    template["metadata"]["labels"] = BARE_LABELS
    [container] = template["spec"]["containers"]
    container["command"] = ["/bin/bash", "-c", BARE_SCRIPT, "bare"]
    container["args"] = [target["dbname"], f"{builders.STORAGE_ROOT}/{artifact}", CLIENT_BIN]
    container["env"] = [e for e in container["env"] if e["name"].startswith("PG")]
    return job


def _bare(
    platform: Platform, ns: Namespace, name: str, target: dict[str, Any], artifact: str
) -> dict[str, Any]:
    started = time.perf_counter()
    ns.apply(_bare_job(ns, name, target, artifact))
    memory = PeakMemory(platform, ns, name)
    types = _watch(
        ns, f"job/{name}", "{.status.conditions[*].type}",
        lambda t: bool({"Complete", "Failed"} & set(t.split())),
    )  # fmt: skip
    wall = time.perf_counter() - started
    peak = memory.stop()
    assert "Complete" in types.split(), ns.kubectl("logs", f"job/{name}", check=False)
    run, pod = _pod_run(ns, name)
    return {"run": run, "pod": pod, "wall": wall, "peak": peak}


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.0f}"


def _each(values: list[Any], spec: str = ".1f") -> str:
    return ", ".join(format(v, spec) for v in values)


def _row(label: str, runs: list[dict[str, Any]]) -> str:
    return (
        f"  {label}: container run {_each([r['run'] for r in runs], '.0f')} s; "
        f"pod start -> finish {_each([r['pod'] for r in runs], '.0f')} s; "
        f"create -> done {_each([r['wall'] for r in runs])} s; "
        f"peak memory {', '.join(_mib(r['peak']) for r in runs)} MiB"
    )


@pytest.mark.timeout(5400)  # the platform, ≈ 1 GB seeded, backed up twice and restored eight times
def test_restore_through_a_database_restore_pod_vs_a_bare_pg_restore_pod(
    backup_ns: Namespace,
    operator: OperatorProcess,
    platform: Platform,
    scratch_pod: PodPostgres,
) -> None:
    pg, ns = platform.pg, backup_ns
    source_db = "learnops_kind_bench"
    conn = pg.create_database(source_db)
    t0 = time.perf_counter()
    pg.pgbench_init(source_db, SCALE)
    seeded = time.perf_counter() - t0
    size = pg.database_size(source_db)
    _, custom = restores.backed_up(ns, pg, conn, "bench-custom", timeout=WATCH_SECONDS)
    made = custom["lastSuccessfulBackup"]
    assert made["artifact"].endswith(".dump.zst"), made  # what BARE_SCRIPT decompresses
    restorer = scratch_pod.in_cluster(restores.role(scratch_pod, "restorer"))
    restores.pgpass_secret(ns, "restore-pgpass", restorer)
    load = os.getloadavg()

    def target(db: str) -> dict[str, Any]:
        return {**restores.server(restorer, "restore-pgpass"), "dbname": db, "policy": "create"}

    through: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for i in range(ROUNDS):  # alternating which goes first, so drift hits both alike
        for side in ("bare", "restore") if i % 2 == 0 else ("restore", "bare"):
            db = f"kind_{side}_{i}"
            if side == "bare":
                bare.append(_bare(platform, ns, f"bare-{i}", target(db), made["artifact"]))
            else:
                through.append(
                    _through_restore(
                        platform, ns, f"round-{i}", target(db), options={"noOwner": True}
                    )
                )
            scratch_pod.drop_database(db)
    load_after = os.getloadavg()
    ratios = [r["run"] / b["run"] for r, b in zip(through, bare, strict=True)]
    _, directory = restores.backed_up(
        ns, pg, conn, "bench-directory", name="nightly-dir", timeout=WATCH_SECONDS,
        format="directory", compression={"algorithm": "gzip", "level": 1},
    )  # fmt: skip
    jobs: dict[int, dict[str, Any]] = {}
    for n in (1, 4):
        jobs[n] = _through_restore(
            platform, ns, f"dir-jobs-{n}", target(f"kind_dir_{n}"), backup="nightly-dir",
            options={"noOwner": True, "jobs": n},
        )  # fmt: skip
        scratch_pod.drop_database(f"kind_dir_{n}")
    dir_made = directory["lastSuccessfulBackup"]
    pg.drop_database(source_db)
    print(
        f"\nkind restore bench, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: a "
        f"{size / 2**30:.2f} GiB database (pgbench scale {SCALE}, seeded through the NodePort in "
        f"{seeded:.0f} s), DatabaseBackup {made['durationSeconds']:.1f} s, custom artifact "
        f"{_mib(made['sizeBytes'])} MiB ({made['artifact']}); {ROUNDS} alternating rounds, load "
        f"average before {' '.join(f'{x:.2f}' for x in load)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)}:\n"
        + _row("DatabaseRestore pod     ", through)
        + f"\n    (the runner's own durationSeconds: "
        f"{_each([r['status']['durationSeconds'] for r in through])} s)\n"
        + _row("bare pg_restore pod     ", bare)
        + f"\n  ratio of container runs per round {_each(ratios, '.3f')}; "
        f"median {statistics.median(ratios):.3f} (bound {MAX_RATIO})\n"
        f"directory format ({_mib(dir_made['sizeBytes'])} MiB, gzip:1, DatabaseBackup "
        f"{dir_made['durationSeconds']:.1f} s) through DatabaseRestore:\n"
        + _row("options.jobs 1 / 4      ", [jobs[1], jobs[4]])
        + f"\n  speed-up of 4 jobs (container run) {jobs[1]['run'] / jobs[4]['run']:.2f}x; "
        f"parallelJobs reported {jobs[1]['status'].get('parallelJobs')} / "
        f"{jobs[4]['status'].get('parallelJobs')}; load average now "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    assert statistics.median(ratios) <= MAX_RATIO
