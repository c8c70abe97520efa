"""Both sides of the operator/dump-runner contract, produced by the packages' own code.

`pod_env` is the environment the operator gives a backup pod, with the pod's paths moved under
a test directory; `runner_summary` is the summary the runner reports, built by the runner's
Report. Tests that need a termination message use these instead of writing one by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from learnops_dump.artifacts import extension, stem_for
from learnops_dump.errors import RunnerError
from learnops_dump.report import Report
from learnops_dump.settings import DumpFormat
from learnops_operator import builders
from learnops_operator.spec import BackupSpec, Owner

POD_PATHS = (builders.SECRET_DIR, builders.STORAGE_ROOT, builders.TMP_DIR)


def pod_env(
    owner: Owner,
    spec: BackupSpec,
    image: str,
    root: Path,
    secret_files: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The backup pod's env from the operator's CronJob, its mount paths under `root`."""
    cronjob = builders.cronjob(owner, spec, image)
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container["env"]:
        value = str(item["value"])
        for path in POD_PATHS:
            if value == path or value.startswith(path + "/"):
                value = str(root / value.lstrip("/"))
                break
        env[item["name"]] = value
    secret_dir = root / builders.SECRET_DIR.lstrip("/")
    for path in POD_PATHS:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for key, text in (secret_files or {}).items():
        (secret_dir / key).write_text(text)
    env["BACKUP_TERMINATION_LOG"] = str(root / "termination-log")
    return env


def runner_summary(
    prefix: str,
    error: RunnerError | None = None,
    started: datetime | None = None,
    payload: bytes = b"a dump",
    **fields: Any,
) -> dict[str, Any]:
    """The runner's own summary of a run; `fields` sets Report attributes (e.g. size)."""
    begin = started or datetime.now(UTC).replace(microsecond=0)
    report = Report(
        started=begin,
        database="app",
        host="db.example",
        format="custom",
        compression="zstd:3",
        credential_source="PGPASSFILE",
        finished=begin + timedelta(seconds=2.5),
        elapsed=2.5,
        server_version="15.8",
        client_version="15.8",
    )
    if error is None:
        # the runner's own naming (learnops_dump.artifacts), not a copy of it
        report.artifact = stem_for(prefix, begin, 0) + extension(
            DumpFormat.CUSTOM, "zstd", external=False
        )
        report.size = len(payload)
        report.sha256 = hashlib.sha256(payload).hexdigest()
    else:
        report.fail(error)
    for name, value in fields.items():
        setattr(report, name, value)
    return report.summary()
