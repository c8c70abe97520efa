"""DatabaseRestore and spec.restoreDrill as frozen values, parsed once from the resource body.

Admission (CRD schema + CEL) already enforces shapes and invalid combinations; this module fills
defaults for objects created before a default existed and re-checks what a missing default could
leave open, so a body that slipped past admission fails with a reason instead of a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from learnops_operator.errors import InvalidSpec
from learnops_operator.spec import ObjectTarget, objects_of

RESTORE_PLURAL = "databaserestores"
RESTORE_KIND = "DatabaseRestore"
POLICIES = ("create", "ifEmpty", "clean")


@dataclass(frozen=True)
class Server:
    """A server and exactly one credential source (a DatabaseBackup's database, minus dbname)."""

    host: str | None
    port: int | None
    user: str | None
    ssl_mode: str
    pgpass_secret: str | None
    pgpass_key: str
    url_secret: str | None

    @property
    def secret_name(self) -> str:
        name = self.pgpass_secret or self.url_secret
        assert name is not None  # server() guarantees exactly one
        return name

    @property
    def endpoint(self) -> str | None:
        """host:port as the drill compares it; None when a URL Secret hides it."""
        if self.host is None:
            return None
        return f"{self.host.strip().lower().rstrip('.')}:{self.port or 5432}"


def server(raw: Mapping[str, Any], where: str) -> Server:
    pgpass, url = raw.get("pgpassSecretRef"), raw.get("urlSecretRef")
    if (pgpass is None) == (url is None):
        raise InvalidSpec(f"exactly one of {where}.pgpassSecretRef or {where}.urlSecretRef")
    if pgpass is not None and not (raw.get("host") and raw.get("user")):
        raise InvalidSpec(f"{where}.host and {where}.user are required with pgpassSecretRef")
    return Server(
        host=str(raw["host"]) if raw.get("host") else None,
        port=int(raw["port"]) if raw.get("port") else (5432 if pgpass is not None else None),
        user=str(raw["user"]) if raw.get("user") else None,
        ssl_mode=str(raw.get("sslMode") or "prefer"),
        pgpass_secret=None if pgpass is None else str(pgpass["name"]),
        pgpass_key=str((pgpass or {}).get("key") or "pgpass"),
        url_secret=None if url is None else str(url["name"]),
    )


@dataclass(frozen=True)
class Storage:
    claim_name: str
    """The PersistentVolumeClaim ("" for an object-storage source)."""
    sub_path: str | None
    prefix: str = "backup"
    """The artifacts' name prefix (a DatabaseBackup's name): `latest` is <prefix>.latest.json."""
    objects: ObjectTarget | None = None
    """An object-storage source (bucket, prefix, credentials Secret) instead of the claim."""


@dataclass(frozen=True)
class RestoreSpec:
    backup_name: str | None
    storage: Storage | None
    """Set for a storage source; a backupRef source takes the DatabaseBackup's storage."""
    artifact: str
    encrypted: bool
    identity_secret: str | None
    """The Secret holding the age identity (mounted as a file, never env)."""
    identity_key: str
    target: Server
    dbname: str
    policy: str
    allow_source_target: bool
    jobs: int
    schema_only: bool
    no_owner: bool
    with_globals: bool
    role: str | None
    check_row_counts: bool
    timeout_seconds: int
    ttl_seconds_after_finished: int
    resources: Mapping[str, Any]
    image: str | None
    image_pull_policy: str

    @property
    def runner_timeout_seconds(self) -> int:
        """The runner stops min(30 s, 10 %) before the Job deadline, to report why."""
        return max(1, int(self.timeout_seconds - min(30.0, self.timeout_seconds * 0.1)))

    def args(self) -> list[str]:
        """`learnops-dump restore` arguments (names and flags only, never a secret)."""
        # --allow-other-source: a DatabaseRestore names its source; another server is the point
        argv = ["restore", self.artifact, "--target-db", self.dbname, "--policy", self.policy]
        argv.append("--allow-other-source")
        argv += ["--jobs", str(self.jobs)]
        if self.no_owner:
            argv.append("--no-owner")
        if self.with_globals:
            argv.append("--with-globals")
        if self.role:
            argv += ["--role", self.role]
        if self.schema_only:
            argv.append("--schema-only")
        if not self.check_row_counts:
            argv.append("--no-row-check")
        if self.allow_source_target:
            argv.append("--allow-source-target")
        return argv


def parse_restore(spec: Mapping[str, Any]) -> RestoreSpec:
    source = spec.get("source") or {}
    ref, store = source.get("backupRef"), source.get("storage")
    if (ref is None) == (store is None):
        raise InvalidSpec("exactly one of source.backupRef or source.storage must be set")
    target = spec.get("target") or {}
    policy = str(target.get("policy") or "ifEmpty")
    if policy not in POLICIES:
        raise InvalidSpec(f"target.policy must be one of {', '.join(POLICIES)}")
    if policy == "clean" and not target.get("allowClean"):
        raise InvalidSpec("target.policy clean needs target.allowClean: true")
    if not target.get("dbname"):
        raise InvalidSpec("target.dbname is required")
    encrypted = bool((store or {}).get("encrypted"))
    if encrypted and not source.get("identitySecretRef"):
        raise InvalidSpec("source.identitySecretRef is required for an encrypted source")
    options = spec.get("options") or {}
    if options.get("role") and not options.get("noOwner"):
        raise InvalidSpec("options.role needs options.noOwner: true")
    storage = None
    if store is not None:
        claim = (store.get("persistentVolumeClaim") or {}).get("claimName")
        objects = objects_of(store)
        if bool(claim) == (objects is not None):
            raise InvalidSpec(
                "source.storage needs exactly one of persistentVolumeClaim, s3, gcs or azureBlob"
            )
        storage = Storage(
            str(claim or ""),
            store.get("subPath") or None,
            str(store.get("prefix") or "backup"),
            objects,
        )
    identity = source.get("identitySecretRef") or {}
    artifact = str((ref or store or {}).get("artifact") or "latest")
    return RestoreSpec(
        backup_name=None if ref is None else str(ref["name"]),
        storage=storage,
        artifact=artifact,
        encrypted=encrypted,
        identity_secret=str(identity["name"]) if identity.get("name") else None,
        identity_key=str(identity.get("key") or "identity"),
        target=server(target, "target"),
        dbname=str(target["dbname"]),
        policy=policy,
        allow_source_target=bool(spec.get("allowSourceTarget", False)),
        jobs=max(1, int(options.get("jobs") or 1)),
        schema_only=bool(options.get("schemaOnly", False)),
        no_owner=bool(options.get("noOwner", False)),
        with_globals=bool(options.get("withGlobals", False)),
        role=str(options["role"]) if options.get("role") else None,
        check_row_counts=bool(options.get("checkRowCounts", True)),
        timeout_seconds=int(spec.get("timeoutSeconds") or 7200),
        ttl_seconds_after_finished=int(spec.get("ttlSecondsAfterFinished") or 86400),
        resources=dict(
            spec.get("resources")
            or {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
        ),
        image=spec.get("image") or None,
        image_pull_policy=str(spec.get("imagePullPolicy") or "IfNotPresent"),
    )


@dataclass(frozen=True)
class DrillSpec:
    schedule: str | None
    after_every_backup: bool
    server: Server
    assertions: tuple[tuple[str, str], ...]
    window_seconds: int
    timeout_seconds: int
    identity_secret: str | None = None
    """The Secret with the age identity of an encrypted backup (mounted as a file, never env)."""
    identity_key: str = "identity"

    @property
    def runner_timeout_seconds(self) -> int:
        return max(1, int(self.timeout_seconds - min(30.0, self.timeout_seconds * 0.1)))


def parse_drill(spec: Mapping[str, Any]) -> DrillSpec | None:
    raw = spec.get("restoreDrill")
    if not raw:
        return None
    schedule = str(raw["schedule"]).strip() if raw.get("schedule") else None
    after = bool(raw.get("afterEveryBackup", False))
    if (schedule is None) == (not after):
        raise InvalidSpec("restoreDrill needs exactly one of schedule or afterEveryBackup: true")
    identity = raw.get("identitySecretRef") or {}
    if spec.get("encryption") and not identity.get("name"):
        raise InvalidSpec(
            "restoreDrill.identitySecretRef is required: spec.encryption encrypts every "
            "artifact, and the drill needs the age identity that decrypts them"
        )
    return DrillSpec(
        schedule=schedule,
        after_every_backup=after,
        server=server(raw.get("server") or {}, "restoreDrill.server"),
        assertions=tuple((str(a["name"]), str(a["sql"])) for a in raw.get("assertions") or () if a),
        window_seconds=int(raw.get("verificationWindowSeconds") or 93600),
        timeout_seconds=int(raw.get("timeoutSeconds") or 3600),
        identity_secret=str(identity["name"]) if identity.get("name") else None,
        identity_key=str(identity.get("key") or "identity"),
    )
