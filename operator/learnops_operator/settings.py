"""The operator's settings: one frozen object, built once in main() from argv and env."""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubernetes.utils import parse_quantity

from learnops_operator import __version__
from learnops_operator.errors import ConfigError

# The learning worker's hard ceiling (docs/runbook.md, "Scaling the worker, and why the cap is 4"):
# lower may be configured, never higher.
WORKER_REPLICA_CEILING = 4
DEFAULT_MAX_RESOURCES = (("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "20Gi"))
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    """Everything the operator can be told; each field documents why it exists."""

    namespace: str | None = None
    """Watch only this namespace; None watches all namespaces (cluster-wide)."""
    max_worker_replicas: int = WORKER_REPLICA_CEILING
    """Replica ceiling for learning-worker Deployments and their HPAs (1..4)."""
    dump_image: str = f"learnops/dump:{__version__}"
    """Dump runner image of every backup pod whose DatabaseBackup names no allowed image."""
    allowed_dump_images: tuple[str, ...] = ()
    """What spec.image may name: repository prefixes (registry.example/team/) or digests
    (sha256:...). Empty: spec.image is refused unless it equals dump_image."""
    allowed_priority_classes: tuple[str, ...] = ()
    """PriorityClasses a DatabaseBackup may give its pod; empty refuses spec.priorityClassName."""
    dump_max_resources: tuple[tuple[str, str], ...] = DEFAULT_MAX_RESOURCES
    """Upper bound of each resource request and limit of a backup pod (cpu, memory,
    ephemeral-storage); a bigger spec.resources is refused with Ready=False."""
    liveness_port: int = 8080
    """Port of kopf's liveness endpoint /healthz (0 disables)."""
    readiness_port: int = 8081
    """Port of /readyz: 200 once the CRD, the RBAC and the Lease namespace are usable (0
    disables)."""
    metrics_port: int = 9090
    """Port of the Prometheus /metrics endpoint (0 disables)."""
    leader_election: bool = True
    """Only the holder of the Lease reconciles, so two replicas never duplicate work."""
    lease_name: str = "learnops-operator"
    """Name of the coordination.k8s.io Lease used for leader election."""
    lease_namespace: str = "learnops-system"
    """Namespace of that Lease (the operator's own namespace)."""
    lease_duration_seconds: float = 15.0
    """How long a silent leader keeps the Lease; also the worst-case failover time."""
    identity: str = field(default_factory=_default_identity)
    """This replica's name in the Lease (pod name in the cluster)."""
    sweep_interval_seconds: float = 30.0
    """How often overdue backups and stuck backup pods are looked for."""
    pending_grace_seconds: float = 60.0
    """A backup pod pending this long gets its events inspected (e.g. a missing Secret)."""
    worker_threads: int = 64
    """Threads for kopf's synchronous handlers; each waits on two API calls, so 16 left the
    operator lagging behind 500 new resources (benchmark: 48-96 all kept pace)."""
    log_json: bool = True
    """JSON log lines (in-cluster); plain text is easier to read locally."""
    verbose: bool = False
    """Debug logging."""


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _resources(text: str) -> tuple[tuple[str, str], ...]:
    """`cpu=4,memory=8Gi`; names outside RESOURCE_NAMES or non-quantities are refused."""
    pairs: list[tuple[str, str]] = []
    for item in _list(text):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in RESOURCE_NAMES:
            raise ConfigError(
                f"dump max resources: use {'/'.join(RESOURCE_NAMES)}=QUANTITY, got {item!r}"
            )
        try:
            parse_quantity(value)
        except ValueError:
            raise ConfigError(f"dump max resources: {name}={value!r} is no quantity") from None
        pairs.append((name, value))
    return tuple(pairs)


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """Every flag falls back to a LEARNOPS_* environment variable (for the chart)."""
    d = Settings()
    p = argparse.ArgumentParser(
        prog="learnops-operator",
        description="Reconcile DatabaseBackup resources into CronJobs and clamp learning workers.",
    )
    p.add_argument(
        "--namespace",
        default=env.get("LEARNOPS_NAMESPACE") or None,
        help="watch only this namespace (env LEARNOPS_NAMESPACE; default: all)",
    )
    p.add_argument(
        "--max-worker-replicas",
        type=int,
        default=_env_int(env, "LEARNOPS_MAX_WORKER_REPLICAS", d.max_worker_replicas),
        help=f"learning-worker replica ceiling, 1..{WORKER_REPLICA_CEILING}",
    )
    p.add_argument(
        "--dump-image",
        default=env.get("LEARNOPS_DUMP_IMAGE") or d.dump_image,
        help="default dump runner image (env LEARNOPS_DUMP_IMAGE)",
    )
    p.add_argument(
        "--allowed-dump-images",
        type=_list,
        default=_list(env.get("LEARNOPS_ALLOWED_DUMP_IMAGES", "")),
        help="comma-separated repository prefixes or sha256 digests spec.image may name "
        "(env LEARNOPS_ALLOWED_DUMP_IMAGES; default: none)",
    )
    p.add_argument(
        "--allowed-priority-classes",
        type=_list,
        default=_list(env.get("LEARNOPS_ALLOWED_PRIORITY_CLASSES", "")),
        help="comma-separated PriorityClasses spec.priorityClassName may name "
        "(env LEARNOPS_ALLOWED_PRIORITY_CLASSES; default: none)",
    )
    p.add_argument(
        "--dump-max-resources",
        type=_resources,
        default=_resources(env.get("LEARNOPS_DUMP_MAX_RESOURCES", "")) or d.dump_max_resources,
        help="bound of each backup pod request/limit, e.g. cpu=4,memory=8Gi "
        "(env LEARNOPS_DUMP_MAX_RESOURCES)",
    )
    p.add_argument(
        "--readiness-port",
        type=int,
        default=_env_int(env, "LEARNOPS_READINESS_PORT", d.readiness_port),
    )
    p.add_argument(
        "--liveness-port",
        type=int,
        default=_env_int(env, "LEARNOPS_LIVENESS_PORT", d.liveness_port),
    )
    p.add_argument(
        "--metrics-port", type=int, default=_env_int(env, "LEARNOPS_METRICS_PORT", d.metrics_port)
    )
    p.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        default=_env_bool(env, "LEARNOPS_LEADER_ELECTION", d.leader_election),
        help="reconcile without holding the Lease (single replica / development)",
    )
    p.add_argument("--lease-name", default=env.get("LEARNOPS_LEASE_NAME") or d.lease_name)
    p.add_argument(
        "--lease-namespace",
        default=env.get("LEARNOPS_LEASE_NAMESPACE")
        or env.get("POD_NAMESPACE")
        or d.lease_namespace,
    )
    p.add_argument(
        "--lease-duration",
        type=float,
        dest="lease_duration_seconds",
        default=float(env.get("LEARNOPS_LEASE_DURATION") or d.lease_duration_seconds),
    )
    p.add_argument("--identity", default=env.get("POD_NAME") or None)
    p.add_argument(
        "--sweep-interval",
        type=float,
        dest="sweep_interval_seconds",
        default=float(env.get("LEARNOPS_SWEEP_INTERVAL") or d.sweep_interval_seconds),
    )
    p.add_argument(
        "--pending-grace",
        type=float,
        dest="pending_grace_seconds",
        default=float(env.get("LEARNOPS_PENDING_GRACE") or d.pending_grace_seconds),
    )
    p.add_argument(
        "--worker-threads",
        type=int,
        default=_env_int(env, "LEARNOPS_WORKER_THREADS", d.worker_threads),
    )
    p.add_argument(
        "--plain-logs",
        dest="log_json",
        action="store_false",
        default=not _env_bool(env, "LEARNOPS_PLAIN_LOGS", False),
    )
    p.add_argument("--verbose", action="store_true")
    return p


def from_args(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Parse and validate; raises ConfigError with a message naming the bad setting."""
    ns = parser(env).parse_args(list(argv))
    values = vars(ns)
    if values["identity"] is None:
        values.pop("identity")
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if not 1 <= s.max_worker_replicas <= WORKER_REPLICA_CEILING:
        raise ConfigError(
            f"max worker replicas must be between 1 and {WORKER_REPLICA_CEILING} "
            f"(a lower ceiling may be configured, never a higher one), got {s.max_worker_replicas}"
        )
    if s.lease_duration_seconds < 2:
        raise ConfigError("lease duration must be at least 2 seconds")
    if s.sweep_interval_seconds <= 0 or s.pending_grace_seconds < 0:
        raise ConfigError("sweep interval must be positive and pending grace non-negative")
    if s.worker_threads < 1:
        raise ConfigError("worker threads must be at least 1")
    for entry in s.allowed_dump_images:
        # a prefix is a repository path (no tag); a digest pins one image
        if not (
            re.fullmatch(r"sha256:[a-f0-9]{64}", entry)
            or re.fullmatch(r"[A-Za-z0-9.:-]+(/[a-z0-9._-]+)*/?", entry)
        ):
            raise ConfigError(
                f"allowed dump images: {entry!r} is neither a repository prefix nor sha256:<digest>"
            )
    ports = [p for p in (s.liveness_port, s.readiness_port, s.metrics_port) if p]
    if len(set(ports)) != len(ports):
        raise ConfigError("liveness, readiness and metrics ports must differ")
    for port in (s.liveness_port, s.readiness_port, s.metrics_port):
        if not 0 <= port <= 65535:
            raise ConfigError(f"port out of range: {port}")
