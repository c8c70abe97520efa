"""Restores and restore drills on real pods: a real backup of sample data in the PostgreSQL pod
is restored through a DatabaseRestore into a second PostgreSQL pod (another server, another
system identifier) and compared table by table; a non-empty target is refused; a scheduled drill
(the CronJob controller fires it) proves the backup restorable, and an artifact corrupted on the
node's volume makes it fail, sets Restorable=False, and the chart's alert rules select it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from psycopg import sql

from tests.harness import promtool
from tests.harness.platform import Platform
from tests.harness.podpostgres import PodPostgres
from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support import restores
from tests.support.operator import Namespace, OperatorProcess
from tests.support.ship import render

TABLES = ("courses", "tasks", "submissions")


def _fingerprint(server: PodPostgres, conn: Conn) -> dict[str, tuple[int, str]]:
    """Every table's row count and an md5 over its rows in a stable order."""
    out: dict[str, tuple[int, str]] = {}
    with server.connect(conn) as c:
        tables = [
            str(r[0])
            for r in c.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'public'::regnamespace ORDER BY 1"
            ).fetchall()
        ]
        for table in tables:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                "FROM {} t"
            ).format(sql.Identifier(table))
            row = c.execute(query).fetchone()
            assert row is not None
            out[table] = (int(str(row[0])), str(row[1]))
    return out


def _url_secret(ns: Namespace, name: str, conn: Conn) -> None:
    url = f"postgresql://{conn.user}:{conn.password}@{conn.host}:{conn.port}/postgres"
    ns.kubectl(
        "create", "secret", "generic", name, "--from-file=DATABASE_URL=/dev/stdin", input=url
    )


def _no_drill_databases_left(server: PodPostgres) -> None:
    with server.connect() as c:
        left = c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'learnops_drill_%'")
        assert left.fetchall() == []


def test_a_real_backup_restores_into_a_new_database_on_a_second_postgresql_table_for_table(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    scratch_cluster: PodPostgres,
) -> None:
    source, done = restores.backed_up(backup_ns, pg_cluster, pg_db, "e2e-restore")
    with scratch_cluster.connect() as c, pg_cluster.connect() as s:
        ids = "SELECT system_identifier FROM pg_control_system()"
        assert c.execute(ids).fetchone() != s.execute(ids).fetchone()
    restorer = restores.role(scratch_cluster, "restorer")
    _url_secret(backup_ns, "restore-url", scratch_cluster.in_cluster(restorer))
    target = {
        "urlSecretRef": {"name": "restore-url"},
        "sslMode": "disable",
        "dbname": "learnops_restored",
        "policy": "create",
    }
    st = restores.restore(backup_ns, "copy", target, options={"noOwner": True})
    assert st["phase"] == "Succeeded", st
    assert st["artifact"] == done["lastSuccessfulBackup"]["artifact"]
    assert st["sha256"] == done["lastSuccessfulBackup"]["sha256"]
    assert st["rowCounts"]["tablesChecked"] == len(TABLES)
    assert st["rowCounts"]["mismatches"] == []
    assert st["durationSeconds"] > 0
    restored = _fingerprint(scratch_cluster, scratch_cluster.admin.with_db("learnops_restored"))
    original = _fingerprint(pg_cluster, pg_db)
    assert sorted(original) == sorted(TABLES)
    assert restored == original
    assert [e["type"] for e in backup_ns.events("RestoreSucceeded", at_least=1)] == ["Normal"]
    written = backup_ns.kubectl("get", "dbb,dbr,jobs,events", "-o", "json")
    pods = backup_ns.kubectl("get", "pods", "-o", "json")
    for canary in (restorer.password, source.password):
        assert canary not in written
        assert canary not in pods
        assert canary not in operator.logs()
    scratch_cluster.drop_database("learnops_restored")


def test_a_restore_into_a_non_empty_database_is_refused_and_leaves_it_untouched(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    scratch_cluster: PodPostgres,
) -> None:
    restores.backed_up(backup_ns, pg_cluster, pg_db, "e2e-refuse")
    busy = f"busy_{secrets.token_hex(3)}"
    scratch_cluster.create_database(busy)  # holds the sample tables already
    with scratch_cluster.connect(scratch_cluster.admin.with_db(busy)) as c:
        c.execute("INSERT INTO courses (title) VALUES ('only here')")
    before = _fingerprint(scratch_cluster, scratch_cluster.admin.with_db(busy))
    admin = scratch_cluster.in_cluster(scratch_cluster.admin)
    restores.pgpass_secret(backup_ns, "restore-pgpass", admin)
    st = restores.restore(
        backup_ns, "into-busy", {**restores.server(admin, "restore-pgpass"), "dbname": busy}
    )
    assert (st["phase"], st["reason"]) == ("Failed", "TargetNotEmpty"), st
    assert "policy ifEmpty restores only into an empty database" in st["message"]
    assert _fingerprint(scratch_cluster, scratch_cluster.admin.with_db(busy)) == before
    assert [e["type"] for e in backup_ns.events("RestoreFailed", at_least=1)] == ["Warning"]
    scratch_cluster.drop_database(busy)


def _drilled_backup(
    ns: Namespace, pg_cluster: PodPostgres, pg_db: Conn, scratch_cluster: PodPostgres
) -> dict[str, Any]:
    drill_role = scratch_cluster.in_cluster(restores.role(scratch_cluster, "drill"))
    restores.pgpass_secret(ns, "scratch-pgpass", drill_role)
    drill = {
        "schedule": "* * * * *",
        "server": restores.server(drill_role, "scratch-pgpass"),
        "assertions": [{"name": "five courses", "sql": "SELECT count(*) = 5 FROM courses"}],
        "verificationWindowSeconds": 600,
        "timeoutSeconds": 120,
    }
    return restores.backed_up(ns, pg_cluster, pg_db, "e2e-drill", restoreDrill=drill)[1]


def _restorable(ns: Namespace, value: str, reason: str | None = None) -> dict[str, Any]:
    """The condition once a scheduled drill set it to `value` (with `reason`, if given): a drill
    that fired before the first backup finished fails first, and truly (nothing to restore)."""
    cond: dict[str, Any] = wait_for(
        lambda: (
            (c := ns.condition("nightly", "Restorable")).get("status") == value
            and (reason is None or c.get("reason") == reason)
            and c
        ),
        200,
        f"Restorable={value} ({reason or 'any reason'}) from a scheduled drill",
    )
    return cond


def test_a_scheduled_drill_proves_the_backup_restorable(
    backup_ns: Namespace,
    operator: OperatorProcess,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    scratch_cluster: PodPostgres,
) -> None:
    done = _drilled_backup(backup_ns, pg_cluster, pg_db, scratch_cluster)
    cond = _restorable(backup_ns, "True")
    assert cond["reason"] == "DrillPassed"
    st = backup_ns.status("nightly")
    verified = st["lastVerifiedRestore"]
    assert verified["artifact"] == done["lastSuccessfulBackup"]["artifact"]
    assert verified["checksPassed"] == [
        "checksum", "restored", "tablesExist", "rowCounts", "assertion:five courses",
    ]  # fmt: skip
    assert st["artifacts"][0]["verifiedRestoreTime"] == verified["time"]
    jobs = backup_ns.items("jobs", "app.kubernetes.io/component=drill")
    assert jobs
    # the CronJob controller made them, on the drill's schedule
    assert all(j["metadata"]["labels"]["learnops.io/trigger"] == "scheduled" for j in jobs)
    assert all(
        ref["kind"] == "CronJob" for j in jobs for ref in j["metadata"].get("ownerReferences", ())
    )
    assert [e["type"] for e in backup_ns.events("DrillPassed", at_least=1)][:1] == ["Normal"]
    wait_for(
        lambda: ("1.0" in [v for _, v in promtool.samples(
            operator.metrics(), "learnops_backup_restorable", namespace=backup_ns.name
        )]),
        30,
        "the restorable gauge at 1",
    )  # fmt: skip
    _no_drill_databases_left(scratch_cluster)


def test_a_corrupted_artifact_fails_the_drill_and_the_alert_rule_selects_it(
    backup_ns: Namespace,
    operator: OperatorProcess,
    platform: Platform,
    pg_cluster: PodPostgres,
    pg_db: Conn,
    scratch_cluster: PodPostgres,
    tmp_path: Path,
) -> None:
    done = _drilled_backup(backup_ns, pg_cluster, pg_db, scratch_cluster)
    artifact = done["lastSuccessfulBackup"]["artifact"]
    files = platform.volume_files(backup_ns.name, "backups")
    data = files[artifact]
    offset = len(data) // 2
    flipped = data[offset] ^ 0xFF
    path = f"{platform.volume_path(backup_ns.name, 'backups')}/{artifact}"
    # one byte in the middle of the artifact, on the node's volume (as bit rot would do it)
    platform.kind.node_exec(
        "sh", "-c",
        f"printf '\\{flipped:03o}' | dd of='{path}' bs=1 seek={offset} conv=notrunc status=none",
    )  # fmt: skip
    assert platform.volume_files(backup_ns.name, "backups")[artifact][offset] == flipped
    cond = _restorable(backup_ns, "False", "VerificationError")
    assert "sha256 differs from its manifest" in cond["message"]
    failed = backup_ns.status("nightly")["lastFailedDrill"]
    assert (failed["artifact"], failed["reason"]) == (artifact, "VerificationError")
    assert "Warning" in [e["type"] for e in backup_ns.events("DrillFailed", at_least=1)]
    wait_for(
        lambda: (
            "0.0"
            in [
                v
                for _, v in promtool.samples(
                    operator.metrics(), "learnops_backup_restorable", namespace=backup_ns.name
                )
            ]
        ),
        30,
        "the restorable gauge at 0",
    )
    # The chart's rules on the scraped series. promtool's clock starts at 0, so the backup's
    # finish time is moved to t=60s; the window (600 s) and the 0/1 values are as scraped.
    (rule,) = [d for d in render("full-monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    series = [
        (s, "60" if s.startswith("learnops_backup_unverified_since") else v)
        for s, v in promtool.samples(
            operator.metrics(), "learnops_backup_", namespace=backup_ns.name
        )
    ]
    labels = {"namespace": backup_ns.name, "name": "nightly", "severity": "warning"}
    proc = promtool.firing(
        tmp_path,
        rule,
        series,
        "30m",
        {"LearnopsBackupNotRestorable": [labels], "LearnopsBackupNotVerified": [labels]},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _no_drill_databases_left(scratch_cluster)
    manifest = f"{artifact.split('.dump')[0]}.manifest.json"
    assert json.loads(platform.volume_files(backup_ns.name, "backups")[manifest])["status"] == "ok"
