"""DatabaseBackup spec as frozen values, parsed once from the resource body.

The CRD schema already enforces shapes, bounds and cross-field rules at admission; this module
re-checks what admission cannot (the time zone exists, croniter accepts the schedule) and fills in
the defaults for objects created before a default was introduced.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from learnops_operator.errors import InvalidSpec

GROUP = "learnops.io"
VERSION = "v1alpha1"
PLURAL = "databasebackups"
KIND = "DatabaseBackup"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_NAME_LENGTH = 42
# The URL keys of a URL Secret the dump runner reads, in its order of preference.
URL_KEYS = ("SESSION_DATABASE_URL", "BACKUP_DATABASE_URL", "DATABASE_URL")

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class Owner:
    """Identity of one DatabaseBackup, enough to label, own and address its children."""

    namespace: str
    name: str
    uid: str
    generation: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body.get("metadata", {})
        return cls(
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
        )


@dataclass(frozen=True)
class Database:
    host: str | None
    port: int | None
    dbname: str | None
    user: str | None
    ssl_mode: str
    pgpass_secret: str | None
    pgpass_key: str
    url_secret: str | None
    dbnames: tuple[str, ...] = ()
    """Several databases to dump, each its own artifact (empty: dbname only)."""
    all_databases: bool = False
    """Every connectable non-template database of the server."""
    url_key: str | None = None
    """The one URL key of the URL Secret to mount; None mounts the three URL keys."""

    @property
    def secret_name(self) -> str:
        name = self.pgpass_secret or self.url_secret
        assert name is not None  # parse() guarantees exactly one
        return name


@dataclass(frozen=True)
class ObjectTarget:
    """spec.storage.s3 / gcs / azureBlob, in the dump runner's terms (no secret values)."""

    kind: str
    """s3 | gcs | azureBlob (BACKUP_STORAGE_KIND)."""
    bucket: str
    prefix: str
    endpoint: str | None
    credentials_secret: str | None
    region: str | None = None
    path_style: bool = False
    sse: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    role_arn: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class Encryption:
    """spec.encryption: recipients inline or a ConfigMap/Secret key mounted as a file."""

    recipients: tuple[str, ...] = ()
    from_kind: str | None = None
    """configMap | secret."""
    from_name: str | None = None
    from_key: str | None = None


@dataclass(frozen=True)
class BackupSpec:
    """The parsed spec. Plumbing fields stay plain mappings: they are passed through verbatim."""

    schedule: str
    time_zone: str
    suspend: bool
    database: Database
    claim_name: str
    sub_path: str | None
    format: str
    compression_algorithm: str
    compression_level: int | None
    timeout_seconds: int
    keep_last: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    verify: str
    starting_deadline_seconds: int
    successful_jobs_history_limit: int
    failed_jobs_history_limit: int
    backoff_limit: int
    ttl_seconds_after_finished: int
    resources: Mapping[str, Any]
    image: str | None
    image_pull_policy: str
    service_account_name: str | None
    priority_class_name: str | None
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    affinity: Mapping[str, Any] | None
    pod_labels: Mapping[str, str]
    pod_annotations: Mapping[str, str]
    globals: bool = False
    """Also pg_dumpall --globals-only as its own artifact."""
    include_role_passwords: bool = False
    """Keep role password hashes in the globals artifact."""
    objects: ObjectTarget | None = None
    encryption: Encryption | None = None

    @property
    def cron_expression(self) -> str:
        """The schedule with macros expanded (croniter and people read the same thing)."""
        return CRON_MACROS.get(self.schedule, self.schedule)

    @property
    def compression(self) -> str:
        """BACKUP_COMPRESSION as the dump runner reads it, e.g. "zstd:3"."""
        if self.compression_level is None:
            return self.compression_algorithm
        return f"{self.compression_algorithm}:{self.compression_level}"

    @property
    def retention(self) -> str:
        """BACKUP_RETENTION as the dump runner reads it."""
        return (
            f"last={self.keep_last},daily={self.keep_daily},"
            f"weekly={self.keep_weekly},monthly={self.keep_monthly}"
        )

    @property
    def runner_timeout_seconds(self) -> int:
        """The runner times out min(30 s, 10 %) early so it can still write its failed manifest."""
        grace = min(30.0, self.timeout_seconds * 0.1)
        return max(1, int(self.timeout_seconds - grace))


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def parse(spec: Mapping[str, Any]) -> BackupSpec:
    """Build a BackupSpec or raise InvalidSpec with a message a person understands."""
    db = spec.get("database") or {}
    pgpass = db.get("pgpassSecretRef")
    url = db.get("urlSecretRef")
    if (pgpass is None) == (url is None):
        raise InvalidSpec(
            "exactly one of database.pgpassSecretRef or database.urlSecretRef must be set"
        )
    if pgpass is not None and not all(db.get(k) for k in ("host", "dbname", "user")):
        raise InvalidSpec(
            "database.host, database.dbname and database.user are required with pgpassSecretRef"
        )
    url_key = (url or {}).get("key")
    if url_key and url_key not in URL_KEYS:
        raise InvalidSpec(f"database.urlSecretRef.key must be one of {', '.join(URL_KEYS)}")
    storage = spec.get("storage") or {}
    claim = (storage.get("persistentVolumeClaim") or {}).get("claimName")
    targets = [k for k in ("persistentVolumeClaim", "s3", "gcs", "azureBlob") if storage.get(k)]
    if len(targets) != 1:
        raise InvalidSpec(
            "storage needs exactly one target: persistentVolumeClaim, s3, gcs or azureBlob"
        )
    objects = objects_of(storage)
    if objects is None and not claim:
        raise InvalidSpec("storage.persistentVolumeClaim.claimName is required")
    compression = spec.get("compression") or {}
    retention = spec.get("retention") or {}
    parsed = BackupSpec(
        schedule=str(spec.get("schedule", "")).strip(),
        time_zone=str(spec.get("timeZone") or "Etc/UTC"),
        suspend=bool(spec.get("suspend", False)),
        database=Database(
            host=db.get("host"),
            port=(_int(db.get("port"), 5432) if pgpass is not None else db.get("port")),
            dbname=db.get("dbname"),
            user=db.get("user"),
            ssl_mode=str(db.get("sslMode") or "prefer"),
            pgpass_secret=None if pgpass is None else str(pgpass["name"]),
            pgpass_key=str((pgpass or {}).get("key") or "pgpass"),
            url_secret=None if url is None else str(url["name"]),
            dbnames=tuple(str(n) for n in db.get("dbnames") or ()),
            all_databases=bool(db.get("allDatabases", False)),
            url_key=str(url_key) if url_key else None,
        ),
        claim_name=str(claim or ""),
        sub_path=storage.get("subPath") or None,
        format=str(spec.get("format") or "custom"),
        compression_algorithm=str(compression.get("algorithm") or "zstd"),
        compression_level=compression.get("level"),
        timeout_seconds=_int(spec.get("timeoutSeconds"), 3600),
        keep_last=_int(retention.get("keepLast"), 7),
        keep_daily=_int(retention.get("keepDaily"), 7),
        keep_weekly=_int(retention.get("keepWeekly"), 4),
        keep_monthly=_int(retention.get("keepMonthly"), 6),
        verify=str(spec.get("verify") or "list"),
        starting_deadline_seconds=_int(spec.get("startingDeadlineSeconds"), 300),
        successful_jobs_history_limit=_int(spec.get("successfulJobsHistoryLimit"), 3),
        failed_jobs_history_limit=_int(spec.get("failedJobsHistoryLimit"), 3),
        backoff_limit=_int(spec.get("backoffLimit"), 1),
        ttl_seconds_after_finished=_int(spec.get("ttlSecondsAfterFinished"), 86400),
        resources=dict(spec.get("resources") or {}),
        image=spec.get("image") or None,
        image_pull_policy=str(spec.get("imagePullPolicy") or "IfNotPresent"),
        service_account_name=spec.get("serviceAccountName") or None,
        priority_class_name=spec.get("priorityClassName") or None,
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(dict(t) for t in spec.get("tolerations") or ()),
        affinity=dict(spec["affinity"]) if spec.get("affinity") else None,
        pod_labels=dict(spec.get("podLabels") or {}),
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        globals=bool(spec.get("globals", False)),
        include_role_passwords=bool(spec.get("includeRolePasswords", False)),
        objects=objects,
        encryption=_encryption(spec.get("encryption")),
    )
    if parsed.database.dbnames and parsed.database.all_databases:
        raise InvalidSpec("database.dbnames and database.allDatabases exclude each other")
    if parsed.include_role_passwords and not parsed.globals:
        raise InvalidSpec("includeRolePasswords needs globals true")
    if parsed.objects is not None:  # the CRD says so too; this holds for older CRDs
        if parsed.database.dbnames or parsed.database.all_databases:
            raise InvalidSpec(
                "object storage takes one database per DatabaseBackup (dbnames and "
                "allDatabases need a persistentVolumeClaim): declare one DatabaseBackup per "
                "database"
            )
        if parsed.globals:
            raise InvalidSpec(
                "globals (roles) need a persistentVolumeClaim; object storage backs up one "
                "database per run"
            )
    _check_schedule(parsed)
    return parsed


def _check_schedule(spec: BackupSpec) -> None:
    fields = spec.cron_expression.split()
    if len(fields) != 5 or not croniter.is_valid(spec.cron_expression):
        raise InvalidSpec(f"schedule {spec.schedule!r} is not a valid 5-field cron expression")
    try:
        zoneinfo.ZoneInfo(spec.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSpec(f"timeZone {spec.time_zone!r} is not a known IANA time zone") from None


def objects_of(storage: Mapping[str, Any]) -> ObjectTarget | None:
    """The object-storage target, if the spec names one (the CRD validated its fields)."""
    s3, gcs, azure = storage.get("s3"), storage.get("gcs"), storage.get("azureBlob")
    if s3:
        sse = s3.get("serverSideEncryption") or {}
        return ObjectTarget(
            kind="s3",
            bucket=str(s3["bucket"]),
            prefix=str(s3.get("prefix") or ""),
            endpoint=s3.get("endpoint") or None,
            credentials_secret=(s3.get("credentialsSecretRef") or {}).get("name"),
            region=s3.get("region") or None,
            path_style=bool(s3.get("forcePathStyle", False)),
            sse=sse.get("algorithm") or None,
            kms_key_id=sse.get("kmsKeyId") or None,
            storage_class=s3.get("storageClass") or None,
            role_arn=(s3.get("webIdentity") or {}).get("roleArn"),
        )
    if gcs:
        return ObjectTarget(
            kind="gcs",
            bucket=str(gcs["bucket"]),
            prefix=str(gcs.get("prefix") or ""),
            endpoint=gcs.get("endpoint") or None,
            credentials_secret=(gcs.get("credentialsSecretRef") or {}).get("name"),
        )
    if azure:
        return ObjectTarget(
            kind="azureBlob",
            bucket=str(azure["container"]),
            prefix=str(azure.get("prefix") or ""),
            endpoint=azure.get("endpoint") or None,
            credentials_secret=(azure.get("credentialsSecretRef") or {}).get("name"),
            account=str(azure["account"]),
        )
    return None


def _encryption(value: Any) -> Encryption | None:
    if not value:
        return None
    recipients = tuple(str(r) for r in value.get("ageRecipients") or ())
    source = value.get("ageRecipientsFrom") or {}
    for kind, ref in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
        if source.get(ref):
            return Encryption(recipients, kind, str(source[ref]["name"]), str(source[ref]["key"]))
    if not recipients:
        raise InvalidSpec("encryption needs ageRecipients or ageRecipientsFrom")
    return Encryption(recipients)
