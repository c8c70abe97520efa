"""The operator's settings: one frozen object, built once in main() from the environment and
the flags (each flag gives the text of its variable)."""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubernetes.utils import parse_quantity

from learnops_operator import __version__
from learnops_operator.declare import declared, help_text, read, setting
from learnops_operator.errors import EXIT_CODES, ConfigError

# The learning worker's hard ceiling (docs/runbook.md, "Scaling the worker, and why the cap is 4"):
# lower may be configured, never higher.
WORKER_REPLICA_CEILING = 4
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _text(_: str, raw: str) -> str:
    return raw


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
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
                f"LEARNOPS_DUMP_MAX_RESOURCES: use {'/'.join(RESOURCE_NAMES)}=QUANTITY, "
                f"got {item!r}"
            )
        try:
            parse_quantity(value)
        except ValueError:
            raise ConfigError(
                f"LEARNOPS_DUMP_MAX_RESOURCES: {name}={value!r} is no quantity"
            ) from None
        pairs.append((name, value))
    return tuple(pairs)


def _names(_: str, raw: str) -> tuple[str, ...]:
    return _list(raw)


def _resource_bounds(_: str, raw: str) -> tuple[tuple[str, str], ...]:
    return _resources(raw)


@dataclass(frozen=True)
class Settings:
    """Everything the operator can be told: the variable, its default and why it exists,
    declared once per field (declare.py); every variable also has a flag."""

    namespace: str | None = setting(
        "LEARNOPS_NAMESPACE", "", _text,
        "Watch only this namespace; empty watches all namespaces (cluster-wide).",
        flag="--namespace",
    )  # fmt: skip
    max_worker_replicas: int = setting(
        "LEARNOPS_MAX_WORKER_REPLICAS", str(WORKER_REPLICA_CEILING), _int,
        f"Replica ceiling for learning-worker Deployments and their HPAs, "
        f"1..{WORKER_REPLICA_CEILING} (lower may be configured, never higher).",
        flag="--max-worker-replicas",
    )  # fmt: skip
    dump_image: str = setting(
        "LEARNOPS_DUMP_IMAGE", f"learnops/dump:{__version__}", _text,
        "Dump runner image of every backup pod whose DatabaseBackup names no allowed image.",
        flag="--dump-image",
    )  # fmt: skip
    allowed_dump_images: tuple[str, ...] = setting(
        "LEARNOPS_ALLOWED_DUMP_IMAGES", "", _names,
        "What spec.image may name, comma-separated: repository prefixes "
        "(registry.example/team/) or sha256:<digest>; empty refuses every other image.",
        value=(), flag="--allowed-dump-images",
    )  # fmt: skip
    allowed_priority_classes: tuple[str, ...] = setting(
        "LEARNOPS_ALLOWED_PRIORITY_CLASSES", "", _names,
        "PriorityClasses (comma-separated) spec.priorityClassName may name; empty refuses all.",
        value=(), flag="--allowed-priority-classes",
    )  # fmt: skip
    dump_max_resources: tuple[tuple[str, str], ...] = setting(
        "LEARNOPS_DUMP_MAX_RESOURCES", "cpu=4,memory=8Gi,ephemeral-storage=20Gi",
        _resource_bounds,
        "Upper bound of each backup pod request and limit (cpu, memory, ephemeral-storage); "
        "a bigger spec.resources is refused with Ready=False.",
        flag="--dump-max-resources",
    )  # fmt: skip
    liveness_port: int = setting(
        "LEARNOPS_LIVENESS_PORT", "8080", _int,
        "Port of the liveness endpoint /healthz (0 disables).",
        flag="--liveness-port",
    )  # fmt: skip
    readiness_port: int = setting(
        "LEARNOPS_READINESS_PORT", "8081", _int,
        "Port of /readyz: 200 once the CRD, the RBAC and the Lease namespace are usable "
        "(0 disables).",
        flag="--readiness-port",
    )  # fmt: skip
    metrics_port: int = setting(
        "LEARNOPS_METRICS_PORT", "9090", _int,
        "Port of the Prometheus /metrics endpoint (0 disables).",
        flag="--metrics-port",
    )  # fmt: skip
    leader_election: bool = setting(
        "LEARNOPS_LEADER_ELECTION", "true", _bool,
        "Only the holder of the Lease reconciles, so two replicas never duplicate work "
        "(false: single replica / development).",
        flag="--no-leader-election", switch="false",
    )  # fmt: skip
    lease_name: str = setting(
        "LEARNOPS_LEASE_NAME", "learnops-operator", _text,
        "Name of the coordination.k8s.io Lease used for leader election.",
        flag="--lease-name",
    )  # fmt: skip
    lease_namespace: str = setting(
        "LEARNOPS_LEASE_NAMESPACE", "learnops-system", _text,
        "Namespace of that Lease (the operator's own); unset: POD_NAMESPACE, then the default.",
        also=("POD_NAMESPACE",), flag="--lease-namespace",
    )  # fmt: skip
    lease_duration_seconds: float = setting(
        "LEARNOPS_LEASE_DURATION", "15", _float,
        "Seconds a silent leader keeps the Lease; also the worst-case failover time (>= 2).",
        flag="--lease-duration",
    )  # fmt: skip
    identity: str = setting(
        "POD_NAME", "", _text,
        "This replica's name in the Lease (the pod name, from the downward API); "
        "unset: <hostname>-<pid>.",
        factory=_default_identity, flag="--identity",
    )  # fmt: skip
    sweep_interval_seconds: float = setting(
        "LEARNOPS_SWEEP_INTERVAL", "30", _float,
        "Seconds between sweeps for overdue backups and stuck backup pods.",
        flag="--sweep-interval",
    )  # fmt: skip
    pending_grace_seconds: float = setting(
        "LEARNOPS_PENDING_GRACE", "60", _float,
        "Seconds a backup pod may be pending before its events are inspected "
        "(e.g. a missing Secret).",
        flag="--pending-grace",
    )  # fmt: skip
    # Each handler thread waits on two API calls, so 16 left the operator lagging behind 500
    # new resources (benchmark: 48-96 all kept pace).
    worker_threads: int = setting(
        "LEARNOPS_WORKER_THREADS", "64", _int,
        "Threads for kopf's synchronous handlers.",
        flag="--worker-threads",
    )  # fmt: skip
    plain_logs: bool = setting(
        "LEARNOPS_PLAIN_LOGS", "false", _bool,
        "Plain-text instead of JSON log lines (JSON in-cluster; plain is easier to read locally).",
        flag="--plain-logs", switch="true",
    )  # fmt: skip
    verbose: bool = setting(
        "LEARNOPS_VERBOSE", "false", _bool, "Debug logging, kopf's included.",
        flag="--verbose", switch="true",
    )  # fmt: skip

    @property
    def log_json(self) -> bool:
        return not self.plain_logs


def parser() -> argparse.ArgumentParser:
    """Every setting has a flag; a flag gives the same text as its variable and wins over it."""
    p = argparse.ArgumentParser(
        prog="learnops-operator",
        description="Reconcile DatabaseBackup resources into CronJobs and clamp learning workers.",
        epilog=f"{help_text(Settings)}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for d in declared(Settings):
        assert d.flag is not None
        if d.switch is not None:
            p.add_argument(
                d.flag, dest=d.env, action="store_const", const=d.switch,
                default=argparse.SUPPRESS, help=f"{d.env}={d.switch}",
            )  # fmt: skip
        else:
            p.add_argument(
                d.flag, dest=d.env, metavar=d.flag.lstrip("-").upper().replace("-", "_"),
                default=argparse.SUPPRESS, help=f"instead of {d.env}",
            )  # fmt: skip
    return p


def from_args(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Flags over variables over defaults; raises ConfigError naming the bad setting."""
    given = {name: text for name, text in vars(parser().parse_args(list(argv))).items()}
    return from_env({**env, **given})


def from_env(env: Mapping[str, str]) -> Settings:
    """Parse and validate; raises ConfigError naming the bad setting."""
    settings = Settings(**read(Settings, env))
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Checks across one or several settings; each message names the variables."""
    if not 1 <= s.max_worker_replicas <= WORKER_REPLICA_CEILING:
        raise ConfigError(
            f"LEARNOPS_MAX_WORKER_REPLICAS must be between 1 and {WORKER_REPLICA_CEILING} "
            f"(a lower ceiling may be configured, never a higher one), got {s.max_worker_replicas}"
        )
    if s.lease_duration_seconds < 2:
        raise ConfigError("LEARNOPS_LEASE_DURATION must be at least 2 seconds")
    if s.sweep_interval_seconds <= 0:
        raise ConfigError("LEARNOPS_SWEEP_INTERVAL must be positive")
    if s.pending_grace_seconds < 0:
        raise ConfigError("LEARNOPS_PENDING_GRACE must not be negative")
    if s.worker_threads < 1:
        raise ConfigError("LEARNOPS_WORKER_THREADS must be at least 1")
    for entry in s.allowed_dump_images:
        # a prefix is a repository path (no tag); a digest pins one image
        if not (
            re.fullmatch(r"sha256:[a-f0-9]{64}", entry)
            or re.fullmatch(r"[A-Za-z0-9.:-]+(/[a-z0-9._-]+)*/?", entry)
        ):
            raise ConfigError(
                f"LEARNOPS_ALLOWED_DUMP_IMAGES: {entry!r} is neither a repository prefix nor "
                "sha256:<digest>"
            )
    ports = {
        "LEARNOPS_LIVENESS_PORT": s.liveness_port,
        "LEARNOPS_READINESS_PORT": s.readiness_port,
        "LEARNOPS_METRICS_PORT": s.metrics_port,
    }
    for name, port in ports.items():
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} out of range 0..65535: {port}")
    used = [p for p in ports.values() if p]
    if len(set(used)) != len(used):
        raise ConfigError(f"{', '.join(ports)} must differ (0 disables one)")
