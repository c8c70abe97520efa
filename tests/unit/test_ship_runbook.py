"""docs/runbook.md says only what the programs, the CRD and the chart really do."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from tests.harness.validate import validation_errors
from tests.support.ship import (
    MANIFESTS,
    RUNBOOK,
    blocks,
    crd_validator,
    pod_specs,
    render,
    restricted_violations,
    yaml_objects,
)

RESTORE_CRD = MANIFESTS / "crds" / "learnops.io_databaserestores.yaml"


def shell_commands(program: str) -> list[list[str]]:
    """argv (after the program name) of every shell line that runs `program`: as the command
    itself (perhaps behind VAR=value assignments) or after `kubectl exec ... --`."""
    found = []
    for block in blocks("sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if "--" in words:
                words = words[words.index("--") + 1 :]
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]
            if words[:1] == [program]:
                found.append(words[1:])
    return found


def restore_job(name: str = "learnops-restore") -> dict[str, Any]:
    (job,) = [d for d in yaml_objects() if d["kind"] == "Job" and d["metadata"]["name"] == name]
    return job


def test_the_restore_from_bucket_job_runs_the_real_command_with_valid_settings() -> None:
    from learnops_dump.buckets import StorageKind
    from learnops_dump.cli import parser
    from learnops_dump.settings import Settings

    spec = restore_job("learnops-restore-from-bucket")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = parser().parse_args(container["args"])
    assert (args.command, args.artifact, args.target_db) == (
        "restore",
        "latest",
        "learnops_restored",
    )
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = Settings.from_env(env)
    assert settings.storage_kind is StorageKind.S3
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["BACKUP_CREDENTIALS_DIR"] == mounts["storage-credentials"]
    assert env["BACKUP_AGE_IDENTITY_FILE"].startswith(mounts["age-identity"] + "/")
    assert all("valueFrom" not in e for e in container["env"])  # secrets only as files


def test_every_learnops_dump_command_parses_with_the_real_cli() -> None:
    from learnops_dump.cli import parser

    commands = shell_commands("learnops-dump")
    assert commands
    for argv in commands:
        parser().parse_args(argv)


def test_every_kubectl_learnops_command_parses_with_the_real_plugin() -> None:
    from learnops_operator.plugin import parser

    commands = [argv[1:] for argv in shell_commands("kubectl") if argv[:1] == ["learnops"]]
    assert {
        next(a for a in argv if a in ("backups", "restore", "backup-now", "status", "--help"))
        for argv in commands
    } >= {"backups", "restore"}
    for argv in commands:
        if argv != ["--help"]:
            parser().parse_args(argv)


def test_every_learning_worker_command_parses_with_the_real_cli() -> None:
    from learnops_worker.cli import _parser

    commands = shell_commands("learning-worker")
    assert {argv[0] for argv in commands} >= {"stats", "retry-failed"}
    for argv in commands:
        _parser().parse_args(argv)


def test_the_restore_job_runs_the_real_restore_command_with_valid_settings() -> None:
    from learnops_dump.cli import parser
    from learnops_dump.settings import Settings

    (container,) = restore_job()["spec"]["template"]["spec"]["containers"]
    args = parser().parse_args(container["args"])
    assert args.command == "restore"
    assert args.target_db == "learnops_restored"
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = Settings.from_env(env)
    assert str(settings.storage_root) == "/backup"
    assert settings.target.passfile is not None
    assert "PGPASSWORD" not in env
    assert not any("secretKeyRef" in (e.get("valueFrom") or {}) for e in container["env"])


def test_the_restore_job_mounts_what_the_operators_backup_pods_mount() -> None:
    from learnops_operator import builders

    spec = restore_job()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["backup"] == builders.STORAGE_ROOT
    assert mounts["db-credentials"] == builders.SECRET_DIR
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PGPASSFILE"].startswith(builders.SECRET_DIR + "/")
    # The in-process timeout ends the restore before Kubernetes kills the pod.
    assert float(env["BACKUP_TIMEOUT_SECONDS"]) < restore_job()["spec"]["activeDeadlineSeconds"]


def test_runbook_manifests_validate_and_meet_the_restricted_standard() -> None:
    objects = yaml_objects()
    ours = {"DatabaseBackup", "DatabaseRestore"}
    assert {d["kind"] for d in objects} == {"PersistentVolumeClaim", "Job", *ours}
    builtin = [d for d in objects if d["kind"] not in ours]
    assert validation_errors(builtin, strict=True) == []
    validator = crd_validator()
    for backup in (d for d in objects if d["kind"] == "DatabaseBackup"):
        assert [e.message for e in validator.iter_errors(backup)] == []
    restores = crd_validator(RESTORE_CRD)
    for restore in (d for d in objects if d["kind"] == "DatabaseRestore"):
        assert [e.message for e in restores.iter_errors(restore)] == []
    for label, spec in pod_specs(objects):
        assert restricted_violations(spec) == [], label


def test_the_exit_code_table_matches_the_dump_runner() -> None:
    from learnops_dump.cli import EXIT_CODES

    text = RUNBOOK.read_text().split("## Dump exit codes", 1)[1]
    rows = re.findall(r"^\| (\d) \| (\w+) \|", text, flags=re.MULTILINE)
    documented = {int(code): reason for code, reason in rows}
    expected = {code: reason for code, reason, _ in EXIT_CODES} | {0: "Ok"}
    assert documented == expected
    assert sorted(documented) == list(range(10))


def test_every_alert_of_the_chart_has_a_runbook_section() -> None:
    (rule,) = [d for d in render("full-monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    headings = set(re.findall(r"^### (\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert alert["alert"] in headings
            assert alert["annotations"]["runbook"].endswith("#" + alert["alert"].lower())


def test_the_on_demand_annotation_is_the_one_the_operator_watches() -> None:
    from learnops_operator.builders import BACKUP_NOW_ANNOTATION

    annotates = [line for b in blocks("sh") for line in b.splitlines() if " annotate " in line]
    backup_now = [line for line in annotates if "databasebackup " in line]
    assert backup_now
    for line in backup_now:
        assert f"{BACKUP_NOW_ANNOTATION}=" in line


@pytest.mark.parametrize(
    "pattern",
    [r"://[^:/\s<]+:(?!<password>@)[^@\s]+@", r":[^:\s]+:(?!<password>)[A-Za-z0-9!]{6,}'"],
)
def test_the_runbook_contains_placeholders_instead_of_passwords(pattern: str) -> None:
    assert not re.search(pattern, RUNBOOK.read_text())
