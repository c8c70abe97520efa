"""The CronJob/Job a DatabaseBackup becomes: restricted PSS, contract env, no secret values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from learnops_operator import builders
from learnops_operator.spec import Owner, parse

OWNER = Owner(namespace="team-a", name="nightly", uid="0000-1111", generation=3)
IMAGE = "registry.example/learnops/dump:1.2.3"


def _pgpass_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": "30 2 * * *",
        "timeZone": "Europe/Berlin",
        "database": {
            "host": "db.team-a.svc",
            "port": 5433,
            "dbname": "app",
            "user": "backup",
            "sslMode": "require",
            "pgpassSecretRef": {"name": "pg-backup", "key": "pgpass"},
        },
        "storage": {"persistentVolumeClaim": {"claimName": "backups"}, "subPath": "team-a"},
        "compression": {"algorithm": "zstd", "level": 3},
        "timeoutSeconds": 1800,
    }
    spec.update(extra)
    return spec


def _url_spec() -> dict[str, Any]:
    return {
        "schedule": "@daily",
        "database": {"urlSecretRef": {"name": "app-db"}},
        "storage": {"persistentVolumeClaim": {"claimName": "backups"}},
    }


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    cronjob = builders.cronjob(OWNER, parse(spec), IMAGE)
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    return pod


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("spec", [_pgpass_spec(), _url_spec()], ids=["pgpass", "url"])
def test_backup_pod_meets_the_restricted_pod_security_standard(spec: dict[str, Any]) -> None:
    pod = _pod(spec)["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int)
    assert psc["runAsUser"] > 0
    assert isinstance(psc["fsGroup"], int)
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert pod.get(key, False) is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert sc.get("privileged") is not True
        assert container["terminationMessagePolicy"] == "File"
    volume_kinds = {next(k for k in v if k != "name") for v in pod["volumes"]}
    # restricted allows only these volume types; hostPath never
    assert volume_kinds <= {"persistentVolumeClaim", "secret", "emptyDir"}
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"


def test_credentials_arrive_as_a_read_only_secret_volume_never_as_env() -> None:
    pod = _pod(_pgpass_spec())
    container = pod["spec"]["containers"][0]
    assert "envFrom" not in container
    assert all("valueFrom" not in e for e in container["env"])
    secret_volume = next(v for v in pod["spec"]["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == "pg-backup"
    assert secret_volume["secret"]["items"] == [{"key": "pgpass", "path": "pgpass"}]
    assert secret_volume["secret"]["defaultMode"] == 0o440
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
    assert mount["readOnly"] is True
    assert _env(pod)["PGPASSFILE"] == f"{mount['mountPath']}/pgpass"


def test_pgpass_mode_passes_the_contract_environment() -> None:
    env = _env(_pod(_pgpass_spec()))
    assert env == {
        "PGHOST": "db.team-a.svc",
        "PGPORT": "5433",
        "PGDATABASE": "app",
        "PGUSER": "backup",
        "PGPASSFILE": "/var/run/secrets/learnops/db/pgpass",
        "PGSSLMODE": "require",
        "BACKUP_STORAGE_ROOT": "/backup",
        "BACKUP_STORAGE_SUBDIR": "team-a",
        "BACKUP_PREFIX": "nightly",
        "BACKUP_TIMEOUT_SECONDS": "1770",  # 1800 minus min(30, 180)
        "BACKUP_FORMAT": "custom",
        "BACKUP_COMPRESSION": "zstd:3",
        "BACKUP_RETENTION": "last=7,daily=7,weekly=4,monthly=6",
        "BACKUP_VERIFY": "list",
        "BACKUP_TERMINATION_LOG": "/dev/termination-log",
        "TMPDIR": "/tmp",
    }


def test_url_mode_points_every_url_variable_at_the_secret_volume() -> None:
    pod = _pod(_url_spec())
    env = _env(pod)
    for name in ("SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL"):
        assert env[f"{name}_FILE"] == f"/var/run/secrets/learnops/db/{name}"
        assert name not in env
    assert not {"PGHOST", "PGUSER", "PGDATABASE", "PGPASSFILE"} & env.keys()
    secret = next(v for v in pod["spec"]["volumes"] if "secret" in v)["secret"]
    assert secret["secretName"] == "app-db"
    # only the URL keys: other keys of a shared Secret stay out of the pod
    assert {i["key"] for i in secret["items"]} == {
        "SESSION_DATABASE_URL",
        "BACKUP_DATABASE_URL",
        "DATABASE_URL",
    }


def test_short_timeouts_keep_a_ten_percent_grace_for_the_runner() -> None:
    env = _env(_pod(_pgpass_spec(timeoutSeconds=120)))
    assert env["BACKUP_TIMEOUT_SECONDS"] == "108"


def test_cronjob_carries_schedule_timing_and_overlap_guard() -> None:
    cj = builders.cronjob(OWNER, parse(_pgpass_spec(suspend=True)), IMAGE)
    spec = cj["spec"]
    assert spec["schedule"] == "30 2 * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["suspend"] is True
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 300
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 1800
    assert job["backoffLimit"] == 1
    assert job["ttlSecondsAfterFinished"] == 86400
    fail_fast = job["podFailurePolicy"]["rules"][0]
    assert fail_fast["action"] == "FailJob"
    assert fail_fast["onExitCodes"]["values"] == [2, 7, 8]
    container = job["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["resources"] == {}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "backup")
    # The whole volume is mounted; the runner makes subPath itself, as its own user.
    assert mount == {"name": "backup", "mountPath": "/backup"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["BACKUP_STORAGE_ROOT"], env["BACKUP_STORAGE_SUBDIR"]) == ("/backup", "team-a")


def test_children_are_owned_and_labelled_per_contract() -> None:
    cj = builders.cronjob(OWNER, parse(_pgpass_spec()), IMAGE)
    assert cj["metadata"]["name"] == "nightly-backup"
    assert cj["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "learnops.io/v1alpha1",
            "kind": "DatabaseBackup",
            "name": "nightly",
            "uid": "0000-1111",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    expected = {
        "app.kubernetes.io/name": "learnops",
        "app.kubernetes.io/component": "backup",
        "app.kubernetes.io/instance": "nightly",
        "app.kubernetes.io/managed-by": "learnops-operator",
        "app.kubernetes.io/part-of": "learnops",
    }
    assert cj["metadata"]["labels"] == expected
    pod_labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert expected.items() <= pod_labels.items()


def test_scheduling_fields_are_passed_through_and_cannot_override_our_labels() -> None:
    plumbing = {
        "imagePullPolicy": "Always",
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"x": 1}},
        "podLabels": {"team": "a", "app.kubernetes.io/instance": "hijack"},
        "podAnnotations": {"note": "hi"},
        "resources": {"limits": {"memory": "1Gi"}},
    }
    pod = _pod(_pgpass_spec(**plumbing))
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == IMAGE
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    assert spec["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}}
    assert spec["serviceAccountName"] == "default"
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == plumbing["tolerations"]
    assert spec["affinity"] == plumbing["affinity"]
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "nightly"
    assert pod["metadata"]["annotations"] == {"note": "hi"}


def test_on_demand_job_name_is_deterministic_per_token_and_fits_the_name_limit() -> None:
    spec = parse(_pgpass_spec())
    long_owner = Owner("ns", "x" * 42, "uid")
    first = builders.on_demand_job(long_owner, spec, IMAGE, "2026-11-30T04:00")
    again = builders.on_demand_job(long_owner, spec, IMAGE, "2026-11-30T04:00")
    other = builders.on_demand_job(long_owner, spec, IMAGE, "another")
    assert first == again
    assert first["metadata"]["name"] != other["metadata"]["name"]
    assert len(first["metadata"]["name"]) <= 63
    assert first["metadata"]["labels"]["learnops.io/trigger"] == "on-demand"
    scheduled = builders.cronjob(long_owner, spec, IMAGE)
    assert len(scheduled["metadata"]["name"]) <= 52  # CronJob name limit
    assert (
        first["spec"]["template"]["spec"]
        == scheduled["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    )


@pytest.mark.parametrize("spec", [_pgpass_spec(), _url_spec()], ids=["pgpass", "url"])
def test_no_password_variable_or_secret_reference_reaches_the_environment(
    spec: dict[str, Any],
) -> None:
    built = [
        builders.cronjob(OWNER, parse(spec), IMAGE),
        builders.on_demand_job(OWNER, parse(spec), IMAGE, "t"),
    ]
    text = json.dumps(built)
    assert "secretKeyRef" not in text
    assert "PGPASSWORD" not in text
    for name in _env(_pod(spec)):
        assert "PASSWORD" not in name
        assert not name.endswith("_URL")  # only *_URL_FILE paths, never a URL value


def test_drift_check_ignores_api_defaults_but_sees_changed_and_added_list_items() -> None:
    desired = {"a": 1, "b": {"c": "x"}, "env": [{"name": "A", "value": "1"}]}
    assert builders.matches(
        desired, {"a": "1", "b": {"c": "x", "default": 0}, "env": [{"name": "A", "value": "1"}]}
    )
    assert not builders.matches(
        desired, {"a": 2, "b": {"c": "x"}, "env": [{"name": "A", "value": "1"}]}
    )
    assert not builders.matches(
        desired,
        {
            "a": 1,
            "b": {"c": "x"},
            "env": [{"name": "A", "value": "1"}, {"name": "EXTRA", "value": "2"}],
        },
    )
    assert not builders.matches(desired, {"a": 1, "env": []})


def test_several_databases_and_globals_reach_the_runner_only_when_asked_for() -> None:
    spec = _pgpass_spec(globals=True, includeRolePasswords=True)
    spec["database"]["dbnames"] = ["app", "Kurs ä/b"]
    env = _env(_pod(spec))
    assert json.loads(env["BACKUP_DATABASES"]) == ["app", "Kurs ä/b"]
    assert env["BACKUP_GLOBALS"] == env["BACKUP_GLOBALS_ROLE_PASSWORDS"] == "true"
    assert "BACKUP_ALL_DATABASES" not in env
    every = _pgpass_spec()
    every["database"]["allDatabases"] = True
    assert _env(_pod(every))["BACKUP_ALL_DATABASES"] == "true"
    plain = _env(_pod(_pgpass_spec()))
    assert not {k for k in plain if "DATABASES" in k or "GLOBALS" in k}


def test_role_passwords_without_globals_or_a_list_with_all_databases_is_invalid() -> None:
    from learnops_operator.errors import InvalidSpec

    with pytest.raises(InvalidSpec, match="includeRolePasswords needs globals"):
        parse(_pgpass_spec(includeRolePasswords=True))
    both = _pgpass_spec()
    both["database"].update(dbnames=["a"], allDatabases=True)
    with pytest.raises(InvalidSpec, match="exclude each other"):
        parse(both)
