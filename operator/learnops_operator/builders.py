"""Pure functions from a DatabaseBackup to the CronJob and Job objects it owns.

Nothing here talks to the API server, so every field can be checked by unit tests. The pod meets
the `restricted` Pod Security Standard and carries no secret value: credentials arrive as a
read-only Secret volume whose path is passed in the environment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from learnops_operator.ours import labels, owner_reference
from learnops_operator.spec import URL_KEYS, BackupSpec, ObjectTarget, Owner

TRIGGER_LABEL = "learnops.io/trigger"
TOKEN_ANNOTATION = "learnops.io/backup-now-token"  # noqa: S105 (a name, not a secret)
BACKUP_NOW_ANNOTATION = "learnops.io/backup-now"

RUNNER_UID = 65532
CONTAINER_NAME = "dump"
SECRET_DIR = "/var/run/secrets/learnops/db"  # noqa: S105 (a path, not a secret)
STORAGE_SECRET_DIR = "/var/run/secrets/learnops/storage"  # noqa: S105 (a path)
RECIPIENTS_DIR = "/etc/learnops/age"
RECIPIENTS_FILE = "recipients"
WEB_IDENTITY_DIR = "/var/run/secrets/learnops/web-identity"
WEB_IDENTITY_AUDIENCE = "sts.amazonaws.com"
WEB_IDENTITY_EXPIRATION_SECONDS = 3600
STORAGE_ROOT = "/backup"
TERMINATION_LOG = "/dev/termination-log"
# The pod's own emptyDir, not a shared host /tmp.
TMP_DIR = "/tmp"  # noqa: S108
# Exit codes that a retry cannot fix: configuration (2), verification (7), version mismatch (8).
NON_RETRYABLE_EXIT_CODES = (2, 7, 8)
# Secret files are root-owned; group-read lets the runner (fsGroup) copy them to a 0600 file.
SECRET_FILE_MODE = 0o440
TMP_SIZE_LIMIT = "64Mi"


def cronjob_name(owner_name: str) -> str:
    return f"{owner_name}-backup"


def on_demand_job_name(owner_name: str, token: str) -> str:
    """Deterministic per token, so a repeat (restart, second replica) hits AlreadyExists."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    return f"{owner_name}-now-{digest}"


def env(owner: Owner, spec: BackupSpec) -> list[dict[str, str]]:
    """The dump runner's settings (names from the dump contract); paths only, never secrets."""
    db = spec.database
    items: list[tuple[str, str]] = []
    if db.pgpass_secret is not None:
        items += [
            ("PGHOST", str(db.host)),
            ("PGPORT", str(db.port)),
            ("PGDATABASE", str(db.dbname)),
            ("PGUSER", str(db.user)),
            ("PGPASSFILE", f"{SECRET_DIR}/{db.pgpass_key}"),
        ]
    else:
        keys = (db.url_key,) if db.url_key else URL_KEYS
        items += [(f"{key}_FILE", f"{SECRET_DIR}/{key}") for key in keys]
    items.append(("PGSSLMODE", db.ssl_mode))
    items += _storage_env(spec)
    items += [
        ("BACKUP_PREFIX", owner.name),
        ("BACKUP_TIMEOUT_SECONDS", str(spec.runner_timeout_seconds)),
        ("BACKUP_FORMAT", spec.format),
        ("BACKUP_COMPRESSION", spec.compression),
        ("BACKUP_RETENTION", spec.retention),
        ("BACKUP_VERIFY", spec.verify),
        ("BACKUP_TERMINATION_LOG", TERMINATION_LOG),
        ("TMPDIR", TMP_DIR),
    ]
    # Only when asked for: a resource that uses none of them keeps its exact env (no drift).
    if db.dbnames:
        items.append(("BACKUP_DATABASES", json.dumps(list(db.dbnames), ensure_ascii=False)))
    if db.all_databases:
        items.append(("BACKUP_ALL_DATABASES", "true"))
    if spec.globals:
        items.append(("BACKUP_GLOBALS", "true"))
    if spec.include_role_passwords:
        items.append(("BACKUP_GLOBALS_ROLE_PASSWORDS", "true"))
    return [{"name": k, "value": v} for k, v in items]


def object_env(target: ObjectTarget) -> list[tuple[str, str]]:
    """The runner's env for an object-storage target: names and paths, never a key."""
    items = [("BACKUP_STORAGE_KIND", target.kind), ("BACKUP_BUCKET", target.bucket)]
    optional = [
        ("BACKUP_OBJECT_PREFIX", target.prefix),
        ("BACKUP_OBJECT_ENDPOINT", target.endpoint),
        ("BACKUP_S3_REGION", target.region),
        ("BACKUP_S3_SSE", target.sse),
        ("BACKUP_S3_SSE_KMS_KEY_ID", target.kms_key_id),
        ("BACKUP_S3_STORAGE_CLASS", target.storage_class),
        ("BACKUP_AZURE_ACCOUNT", target.account),
    ]
    items += [(k, v) for k, v in optional if v]
    if target.path_style:
        items.append(("BACKUP_S3_PATH_STYLE", "true"))
    if target.credentials_secret:
        items.append(("BACKUP_CREDENTIALS_DIR", STORAGE_SECRET_DIR))
    if target.role_arn:
        items += [
            ("BACKUP_S3_ROLE_ARN", target.role_arn),
            ("BACKUP_S3_WEB_IDENTITY_TOKEN_FILE", f"{WEB_IDENTITY_DIR}/token"),
        ]
    return items


def object_volumes(target: ObjectTarget) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): the target's credentials Secret and web-identity token, as files."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if target.credentials_secret:
        secret = {"secretName": target.credentials_secret, "defaultMode": SECRET_FILE_MODE}
        volumes.append({"name": "storage-credentials", "secret": secret})
        mounts.append(
            {"name": "storage-credentials", "mountPath": STORAGE_SECRET_DIR, "readOnly": True}
        )
    if target.role_arn:
        token = {
            "audience": WEB_IDENTITY_AUDIENCE,
            "expirationSeconds": WEB_IDENTITY_EXPIRATION_SECONDS,
            "path": "token",
        }
        volumes.append(
            {"name": "web-identity", "projected": {"sources": [{"serviceAccountToken": token}]}}
        )
        mounts.append({"name": "web-identity", "mountPath": WEB_IDENTITY_DIR, "readOnly": True})
    return volumes, mounts


def _storage_env(spec: BackupSpec) -> list[tuple[str, str]]:
    """Where the backup goes; for object storage the credentials' directory, never a key."""
    target = spec.objects
    if target is None:
        items = [("BACKUP_STORAGE_ROOT", STORAGE_ROOT)]
        # The runner makes subPath itself: a kubelet-made subPath directory belongs to root on
        # volumes that ignore fsGroup (hostPath, local-path), and a restricted pod cannot chown.
        if spec.sub_path:
            items.append(("BACKUP_STORAGE_SUBDIR", spec.sub_path))
    else:
        items = object_env(target)
    enc = spec.encryption
    if enc is not None:
        if enc.from_kind is not None:
            items.append(("BACKUP_AGE_RECIPIENTS_FILE", f"{RECIPIENTS_DIR}/{RECIPIENTS_FILE}"))
        else:  # public keys: not secrets, fine as env values
            items.append(("BACKUP_AGE_RECIPIENTS", ",".join(enc.recipients)))
    return items


def _storage_volumes(spec: BackupSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) for the backup target, its credentials and the age recipients."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    target = spec.objects
    if target is None:
        # the whole claim: the runner makes subPath inside it (BACKUP_STORAGE_SUBDIR)
        mounts.append({"name": "backup", "mountPath": STORAGE_ROOT})
        volumes.append({"name": "backup", "persistentVolumeClaim": {"claimName": spec.claim_name}})
    else:
        volumes, mounts = object_volumes(target)
    enc = spec.encryption
    if enc is not None and enc.from_kind is not None:
        items = [{"key": enc.from_key, "path": RECIPIENTS_FILE}]
        if enc.from_kind == "secret":
            source: dict[str, Any] = {
                "secret": {"secretName": enc.from_name, "items": items, "defaultMode": 0o440}
            }
        else:
            source = {"configMap": {"name": enc.from_name, "items": items, "defaultMode": 0o440}}
        volumes.append({"name": "age-recipients", **source})
        mounts.append({"name": "age-recipients", "mountPath": RECIPIENTS_DIR, "readOnly": True})
    return volumes, mounts


def _secret_volume(spec: BackupSpec) -> dict[str, Any]:
    db = spec.database
    secret: dict[str, Any] = {"secretName": db.secret_name, "defaultMode": SECRET_FILE_MODE}
    # Only the credential keys: other keys of a shared Secret stay out of the pod.
    if db.pgpass_secret is not None:
        secret["items"] = [{"key": db.pgpass_key, "path": db.pgpass_key}]
    elif db.url_key:
        secret["items"] = [{"key": db.url_key, "path": db.url_key}]
    else:
        # Any of the three URL keys may be present; the kubelet skips absent items only when
        # the volume is optional, and then a missing Secret surfaces as the runner's
        # ConfigError ("no connection") instead of a FailedMount.
        secret["items"] = [{"key": key, "path": key} for key in URL_KEYS]
        secret["optional"] = True
    return {"name": "db-credentials", "secret": secret}


def pod_template(owner: Owner, spec: BackupSpec, image: str, trigger: str) -> dict[str, Any]:
    """The backup pod. Every security-relevant field is ours; from the spec come only the
    scheduling fields and annotations that policy.check has bounded, and `image`, which
    policy.image_for has resolved (the operator's default or an allow-listed one)."""
    storage_volumes, storage_mounts = _storage_volumes(spec)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["run"],
        "env": env(owner, spec),
        "resources": dict(spec.resources),
        "volumeMounts": [
            *storage_mounts,
            {"name": "db-credentials", "mountPath": SECRET_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
        # File, not FallbackToLogsOnError: logs are never copied into the API object.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
            "privileged": False,
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Set explicitly, not left out: server-side apply then owns them, so an edit of the
        # CronJob that hands the pod another account or the host's namespaces is reverted.
        "serviceAccountName": "default",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            *storage_volumes,
            _secret_volume(spec),
            # tmpfs: the runner's private 0600 pgpass copy never touches a disk.
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE_LIMIT}},
        ],
    }
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod_spec["affinity"] = dict(spec.affinity)
    metadata: dict[str, Any] = {
        # Ours last: user labels cannot take over the selector labels.
        "labels": {**spec.pod_labels, **labels(owner.name), TRIGGER_LABEL: trigger},
    }
    if spec.pod_annotations:
        metadata["annotations"] = dict(spec.pod_annotations)
    return {"metadata": metadata, "spec": pod_spec}


def job_spec(owner: Owner, spec: BackupSpec, image: str, trigger: str) -> dict[str, Any]:
    return {
        "activeDeadlineSeconds": spec.timeout_seconds,
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": list(NON_RETRYABLE_EXIT_CODES),
                    },
                },
                # A drained node is not the dump's fault: do not spend a retry on it.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": pod_template(owner, spec, image, trigger),
    }


def cronjob(owner: Owner, spec: BackupSpec, image: str) -> dict[str, Any]:
    """The one CronJob a DatabaseBackup owns."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels(owner.name),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": spec.schedule,
            "timeZone": spec.time_zone,
            "suspend": spec.suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": spec.starting_deadline_seconds,
            "successfulJobsHistoryLimit": spec.successful_jobs_history_limit,
            "failedJobsHistoryLimit": spec.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": {**labels(owner.name), TRIGGER_LABEL: "scheduled"}},
                "spec": job_spec(owner, spec, image, "scheduled"),
            },
        },
    }


def on_demand_job(owner: Owner, spec: BackupSpec, image: str, token: str) -> dict[str, Any]:
    """One Job per backup-now token, built from the same template as the CronJob's."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": on_demand_job_name(owner.name, token),
            "namespace": owner.namespace,
            "labels": {**labels(owner.name), TRIGGER_LABEL: "on-demand"},
            "annotations": {TOKEN_ANNOTATION: token},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": job_spec(owner, spec, image, "on-demand"),
    }


def matches(desired: Any, actual: Any) -> bool:
    """True if every field we set has our value in `actual` (the API adds defaults around them).

    Lists must match element-wise and in length, so an added or removed env var counts as drift.
    Scalars compare as strings too: the API may echo 1 as "1". A false, zero or empty value we
    set may come back absent (the API omits zero values of plain fields, e.g. hostNetwork).
    """
    if actual is None and desired in (False, 0, "", [], {}):
        return True
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            matches(value, actual.get(key)) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(matches(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired == actual or str(desired) == str(actual))
