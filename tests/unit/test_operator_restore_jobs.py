"""Pure parts of restores, drills and the inventory: the Jobs they build (hardened like backup
pods, storage read-only, no secret anywhere), spec parsing, status folding, and the plugin's
DatabaseRestore manifest."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from learnops_operator import builders, drills, inventory, jobpods, restoreresults, restores
from learnops_operator.errors import InvalidSpec
from learnops_operator.plugin import default_database, parser, restore_manifest
from learnops_operator.restorespec import Storage, parse_drill, parse_restore
from learnops_operator.results import RunResult
from learnops_operator.spec import ObjectTarget, Owner, parse

from tests.harness.conditions import condition

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _restore_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"backupRef": {"name": "nightly", "artifact": "latest"}},
        "target": {
            "host": "db2",
            "user": "r",
            "pgpassSecretRef": {"name": "p", "key": "pgpass"},
            "dbname": "copy",
            "policy": "create",
        },
        "options": {"jobs": 4, "noOwner": True, "role": "app"},
    }
    spec.update(over)
    return spec


def _backup_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "learnops.io/v1alpha1",
        "kind": "DatabaseBackup",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "u1", "generation": 3},
        "spec": {
            "schedule": "30 2 * * *",
            "database": {
                "host": "db.example",
                "dbname": "app",
                "user": "b",
                "pgpassSecretRef": {"name": "pg"},
            },
            "storage": {"persistentVolumeClaim": {"claimName": "backups"}, "subPath": "team"},
            **spec,
        },
    }


def _job() -> dict[str, Any]:
    return jobpods.restore_job(
        "ns", "r1", "uid", 2, parse_restore(_restore_spec()), Storage("backups", "team"), "img:1"
    )


def test_restore_and_drill_pods_carry_exactly_the_backup_pods_hardening() -> None:
    body = _backup_body(
        restoreDrill={"afterEveryBackup": True, "server": {"urlSecretRef": {"name": "s"}}}
    )
    owner, spec = Owner.from_body(body), parse(body["spec"])
    backup_pod = builders.pod_template(owner, spec, "img:1", "scheduled")["spec"]
    drill = parse_drill(body["spec"])
    assert drill is not None
    drill_pod = jobpods.drill_job(
        owner, drill, Storage("backups", None), "img:1", "Never", "a.dump", None
    )
    for pod in (_job()["spec"]["template"]["spec"], drill_pod["spec"]["template"]["spec"]):
        for key in (
            "securityContext",
            "automountServiceAccountToken",
            "enableServiceLinks",
            "restartPolicy",
        ):
            assert pod[key] == backup_pod[key], key
        (container,), (reference,) = pod["containers"], backup_pod["containers"]
        for key in ("securityContext", "terminationMessagePath", "terminationMessagePolicy"):
            assert container[key] == reference[key], key
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert tmp == next(v for v in backup_pod["volumes"] if v["name"] == "tmp")
        backup_volume = next(v for v in pod["volumes"] if v["name"] == "backup")
        assert backup_volume["persistentVolumeClaim"]["readOnly"] is True
        mount = next(m for m in container["volumeMounts"] if m["name"] == "backup")
        assert mount["readOnly"] is True


def test_the_restore_job_runs_once_with_names_and_flags_but_no_secret() -> None:
    job = _job()
    assert job["metadata"]["name"] == "r1-restore-g2"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    assert job["spec"]["backoffLimit"] == 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "restore", "latest", "--target-db", "copy", "--policy", "create", "--allow-other-source",
        "--jobs", "4", "--no-owner", "--role", "app",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PGPASSFILE"] == f"{builders.SECRET_DIR}/pgpass"
    assert env["BACKUP_PREFIX"] == "backup"  # a storage source's default; a backupRef: its name
    assert "PGDATABASE" not in env  # the dbname travels as --target-db
    assert int(env["BACKUP_TIMEOUT_SECONDS"]) < job["spec"]["activeDeadlineSeconds"]
    assert all("valueFrom" not in e for e in container["env"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "backup")
    assert mount["subPath"] == "team"
    secret = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert secret["secret"]["items"] == [{"key": "pgpass", "path": "pgpass"}]


def test_a_url_target_mounts_the_whole_secret_and_reads_url_files() -> None:
    spec = _restore_spec(target={"urlSecretRef": {"name": "u"}, "dbname": "copy"})
    job = jobpods.restore_job("ns", "r", "u", 1, parse_restore(spec), Storage("b", None), "i")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL_FILE"] == f"{builders.SECRET_DIR}/DATABASE_URL"
    assert "PGHOST" not in env


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {}}, "exactly one of source"),
        (
            {"target": {"dbname": "x", "policy": "clean", "urlSecretRef": {"name": "u"}}},
            "allowClean",
        ),
        ({"target": {"dbname": "x"}}, "exactly one of target"),
        ({"options": {"role": "r"}}, "needs options.noOwner"),
        (
            {
                "source": {
                    "storage": {"persistentVolumeClaim": {"claimName": "b"}, "encrypted": True}
                }
            },
            "identitySecretRef",
        ),
    ],
)
def test_parse_restore_refuses_what_admission_should_have_refused(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_restore(_restore_spec(**spec))


def _running(job: str = "r1-restore-g1") -> dict[str, Any]:
    return {"phase": "Running", "jobName": job, "runGeneration": 1, "observedGeneration": 1}


def test_a_result_is_folded_only_into_the_restore_whose_job_is_running() -> None:
    ok = RunResult("r1-restore-g1", True, "Ok", "", NOW, 0, "a.dump", 10, "ab" * 32, 2.5)
    more = restoreresults.Extras(1, 3, 30, (), ("restored",))
    new = restores.record(_running(), "r1-restore-g1", ok, more, NOW)
    assert new is not None
    assert (new["phase"], new["reason"], new["artifact"], new["durationSeconds"]) == (
        "Succeeded", "Restored", "a.dump", 2.5,
    )  # fmt: skip
    assert new["rowCounts"] == {"tablesChecked": 3, "rowsChecked": 30, "mismatches": []}
    assert restores.record(new, "r1-restore-g1", ok, more, NOW) is None  # once
    assert restores.record(_running("other"), "r1-restore-g1", ok, more, NOW) is None


def test_needs_run_is_one_run_per_generation_and_waits_for_a_running_one() -> None:
    body: dict[str, Any] = {"metadata": {"generation": 2}, "status": {"runGeneration": 2}}
    assert not restores.needs_run(body)
    body["metadata"]["generation"] = 3
    assert restores.needs_run(body)
    body["status"] = {**_running(), "runGeneration": 2}
    assert not restores.needs_run(body)
    assert restores.needs_run({"metadata": {"generation": 1}})
    assert not restores.needs_run({"metadata": {"generation": 1, "deletionTimestamp": "x"}})


def test_untrusted_extras_are_bounded_and_type_checked() -> None:
    message = json.dumps(
        {
            "status": "ok",
            "tablesChecked": -1,
            "rowsChecked": True,
            "parallelJobs": 4,
            "mismatches": ["x" * 5000, 7, *["m"] * 50],
            "checksPassed": "restored",
        }
    )
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "dump", "state": {"terminated": {"exitCode": 0, "message": message}}}
            ]
        }
    }
    more = restoreresults.extras([pod], True)
    assert (more.tables_checked, more.rows_checked, more.parallel_jobs) == (None, None, 4)
    assert len(more.mismatches) == restoreresults.MAX_ITEMS
    assert len(more.mismatches[0]) <= restoreresults.MAX_ITEM_CHARS
    assert more.checks_passed == ()
    assert restoreresults.extras([{"status": {}}], False) == restoreresults.Extras()


def _result(artifact: str, when: datetime, ok: bool = True) -> RunResult:
    return RunResult(
        "j-" + artifact, ok, "Ok" if ok else "DumpError", "", when, 0, artifact, 1, "s"
    )


def test_the_inventory_is_newest_first_bounded_and_marks_verified_artifacts() -> None:
    st: dict[str, Any] = {}
    for i in range(15):
        st = inventory.with_artifact(st, _result(f"a{i}", NOW), 12, f"t{i}")
    assert [a["name"] for a in st["artifacts"]] == [f"a{i}" for i in range(14, 4, -1)]
    st = inventory.with_artifact(st, _result("failed", NOW, ok=False), 12, "tf")
    assert st["artifacts"][0]["name"] == "a14"
    st = inventory.mark_verified(st, "a13", "v")
    assert st["artifacts"][1]["verifiedRestoreTime"] == "v"
    assert len(inventory.with_artifact({}, _result("x", NOW), 1, "t")["artifacts"]) == 1


def test_a_drill_result_sets_restorable_and_records_once_in_order() -> None:
    st = inventory.with_artifact({}, _result("a.dump", NOW), 7, "t0")
    ok = RunResult("d1", True, "Ok", "", NOW, 0, "a.dump", None, None, 3.0)
    more = restoreresults.Extras(None, 3, 9, (), ("checksum", "restored"))
    new = drills.record(st, ok, more, "a.dump", 4, NOW)
    assert new is not None
    cond = condition(new, "Restorable")
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "True",
        "DrillPassed",
        4,
    )
    assert new["artifacts"][0]["verifiedRestoreTime"] == new["lastVerifiedRestore"]["time"]
    assert drills.record(new, ok, more, "a.dump", 4, NOW) is None
    older = RunResult("d0", False, "VerificationError", "bad", NOW - timedelta(hours=1))
    assert drills.record(new, older, more, "a.dump", 4, NOW) is None
    bad = RunResult("d2", False, "VerificationError", "sha256 differs", NOW + timedelta(minutes=1))
    failed = drills.record(new, bad, restoreresults.Extras(), "b.dump", 4, NOW)
    assert failed is not None
    cond = condition(failed, "Restorable")
    assert (cond["status"], cond["reason"]) == ("False", "VerificationError")
    assert failed["lastFailedDrill"]["artifact"] == "b.dump"
    assert failed["lastVerifiedRestore"] == new["lastVerifiedRestore"]


def test_drills_need_exactly_one_trigger_and_their_own_server() -> None:
    server = {"host": "s", "user": "u", "pgpassSecretRef": {"name": "p"}}
    with pytest.raises(InvalidSpec, match="exactly one of schedule"):
        parse_drill({"restoreDrill": {"server": server}})
    with pytest.raises(InvalidSpec, match=r"restoreDrill\.server"):
        parse_drill({"restoreDrill": {"afterEveryBackup": True, "server": {}}})
    drill = parse_drill({"restoreDrill": {"schedule": "@daily", "server": server}})
    assert drill is not None
    assert drill.server.endpoint == "s:5432"
    assert parse_drill({}) is None


def test_an_encrypted_backups_drill_needs_the_identity_which_is_mounted_as_a_file() -> None:
    server = {"host": "s", "user": "u", "pgpassSecretRef": {"name": "p"}}
    encrypted = {"encryption": {"ageRecipients": ["age1" + "q" * 58]}}
    with pytest.raises(InvalidSpec, match=r"restoreDrill\.identitySecretRef is required"):
        parse_drill({**encrypted, "restoreDrill": {"schedule": "@daily", "server": server}})
    raw = {"schedule": "@daily", "server": server, "identitySecretRef": {"name": "age"}}
    drill = parse_drill({**encrypted, "restoreDrill": raw})
    assert drill is not None
    assert (drill.identity_secret, drill.identity_key) == ("age", "identity")
    s3 = ObjectTarget("s3", "b", "prod", None, "s3-creds")
    owner = Owner("ns", "nightly", "u1", 1)
    job = jobpods.drill_job(
        owner, drill, Storage("", None, objects=s3), "img:1", "Never", "a.dump.zst.age", None
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BACKUP_AGE_IDENTITY_FILE"] == f"{jobpods.IDENTITY_DIR}/identity"
    assert (env["BACKUP_STORAGE_KIND"], env["BACKUP_PREFIX"]) == ("s3", "nightly")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["age-identity"]["secret"]["items"] == [{"key": "identity", "path": "identity"}]
    assert "backup" not in volumes
    assert all("valueFrom" not in e for e in container["env"])
    # a plain backup's drill has no identity to mount
    plain = parse_drill({"restoreDrill": {"schedule": "@daily", "server": server}})
    assert plain is not None
    job = jobpods.drill_job(owner, plain, Storage("backups", None), "i", "Never", "a.dump", None)
    assert "age-identity" not in {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}


def test_drill_and_restore_pods_of_a_web_identity_bucket_carry_its_token_and_run_as_default() -> (
    None
):
    role = "arn:aws:iam::123456789012:role/learnops"
    target = ObjectTarget("s3", "b", "prod", None, None, role_arn=role)
    storage = Storage("", None, "nightly", target)
    drill = parse_drill({"restoreDrill": {"afterEveryBackup": True, "server": {
        "urlSecretRef": {"name": "s"}}}})  # fmt: skip
    assert drill is not None
    owner = Owner("ns", "nightly", "u1", 1)
    cronjob = jobpods.drill_cronjob(owner, drill, storage, "i", "Never", "Etc/UTC", False, None)
    pods = [
        jobpods.drill_job(owner, drill, storage, "i", "Never", "a.dump", None),
        cronjob["spec"]["jobTemplate"],
        jobpods.restore_job("ns", "r", "u", 1, parse_restore(_restore_spec()), storage, "i"),
    ]
    for pod in (p["spec"]["template"]["spec"] for p in pods):
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert env["BACKUP_S3_ROLE_ARN"] == role
        assert env["BACKUP_S3_WEB_IDENTITY_TOKEN_FILE"] == f"{builders.WEB_IDENTITY_DIR}/token"
        volumes = {v["name"]: v for v in pod["volumes"]}
        [source] = volumes["web-identity"]["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
        assert source["serviceAccountToken"]["path"] == "token"
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (
            "default",
            False,
        )


def _plugin_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["restore", "nightly", *argv])


def test_the_plugin_writes_a_restore_into_a_new_database_by_default() -> None:
    manifest = restore_manifest(_plugin_args("--to", "url"), NOW)
    target = manifest["spec"]["target"]
    assert (target["dbname"], target["policy"]) == ("restored_nightly_20261201030000", "create")
    assert target["urlSecretRef"] == {"name": "url"}
    assert manifest["metadata"] == {"generateName": "nightly-restore-"}
    named = restore_manifest(_plugin_args("--to", "u", "--database", "d", "--policy", "clean"), NOW)
    assert named["spec"]["target"]["allowClean"] is True
    assert default_database("Team-A.Nightly", NOW) == "restored_team_a_nightly_20261201030000"
    assert len(default_database("x" * 60, NOW)) <= 63
