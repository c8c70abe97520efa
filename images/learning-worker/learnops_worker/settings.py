"""The one settings object of a worker process, built once in `main()` from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

# Two cores per pod and a shared database/AI backend: more threads than this only queue
# up behind the GIL and the provider's rate limit. Scale out with replicas instead.
CONCURRENCY_CAP = 4


class Secret:
    """A string that never shows itself in repr/str (logs, tracebacks, exceptions)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Worker settings; every field is documented in docs/worker.md."""

    database_url: Secret = field(default_factory=lambda: Secret(""))
    """libpq URL or conninfo of the job database (DATABASE_URL / DATABASE_URL_FILE)."""
    concurrency: int = 1
    """Jobs run at once by this process, at most CONCURRENCY_CAP."""
    lease_seconds: float = 30.0
    """How long a claim stays valid without a heartbeat; a dead worker's job waits this long."""
    heartbeat_seconds: float = 10.0
    """How often leases are extended; must be well below lease_seconds."""
    max_attempts: int = 5
    """Attempts (claims) before a job becomes failed."""
    shutdown_timeout_seconds: float = 20.0
    """Drain time after SIGTERM; keep below the pod's terminationGracePeriodSeconds."""
    handlers: str = ""
    """Extra or replacing handlers, `kind=module:function,...`."""
    http_port: int = 8080
    """Port of /healthz, /readyz, /metrics; 0 disables the server."""
    global_max_inflight: int = 0
    """Running jobs across all workers, enforced by a unique slot index; 0 = no cap."""
    poll_seconds: float = 2.0
    """Polling backstop when no NOTIFY arrives (also how soon delayed jobs start)."""
    backoff_base_seconds: float = 2.0
    """First retry delay; doubles per attempt."""
    backoff_max_seconds: float = 600.0
    """Retry delays never exceed this."""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    """Name written into claimed rows and logs (defaults to host-pid)."""
    log_level: str = "INFO"
    """Python log level name."""
    feedback_backend: str = "local"
    """`local` (rubric and keywords, no network) or `openai`."""
    openai_base_url: str = "https://api.openai.com/v1"
    """Base URL of an OpenAI-compatible API."""
    openai_model: str = "gpt-4o-mini"
    """Model name sent to the provider and used in the result cache key."""
    openai_api_key: Secret = field(default_factory=lambda: Secret(""))
    """API key (OPENAI_API_KEY / OPENAI_API_KEY_FILE)."""
    openai_timeout_seconds: float = 60.0
    """Per-request timeout towards the provider."""
    openai_max_retries: int = 3
    """Retries on 429/5xx/network errors before the job is retried later."""
    job_timeout_seconds: float = 600.0
    """A handler running longer ends its attempt (retried or failed); 0 = no timeout."""
    job_timeouts: tuple[tuple[str, float], ...] = ()
    """Per-kind overrides of job_timeout_seconds, from `kind=seconds,...`."""
    statement_timeout_seconds: float = 10.0
    """Server-side limit of every worker statement; the client gives up shortly after."""
    retention_succeeded_seconds: float = 7 * 86400.0
    """Succeeded and cancelled jobs are deleted this long after they finished; 0 = keep."""
    retention_failed_seconds: float = 30 * 86400.0
    """Failed jobs are deleted this long after they failed; 0 = keep."""
    cache_ttl_seconds: float = 30 * 86400.0
    """Result cache rows are deleted this long after they were stored; 0 = keep."""
    retention_interval_seconds: float = 60.0
    """How often one worker (of all) prunes finished jobs and cache rows."""
    warnings: tuple[str, ...] = ()
    """Non-fatal configuration notes, logged once at start."""

    def timeout_for(self, kind: str) -> float:
        """The job timeout of `kind` in seconds (0 = none)."""
        for name, seconds in self.job_timeouts:
            if name == kind:
                return seconds
        return self.job_timeout_seconds


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raises ConfigError naming the bad variable."""
    env = os.environ if env is None else env
    notes: list[str] = []
    concurrency = _int(env, "WORKER_CONCURRENCY", 1)
    if concurrency < 1:
        raise ConfigError(f"WORKER_CONCURRENCY must be at least 1, got {concurrency}")
    if concurrency > CONCURRENCY_CAP:
        notes.append(
            f"WORKER_CONCURRENCY={concurrency} exceeds the cap of {CONCURRENCY_CAP}; "
            f"using {CONCURRENCY_CAP} (run more replicas to scale out)"
        )
        concurrency = CONCURRENCY_CAP
    lease = _float(env, "WORKER_LEASE_SECONDS", 30.0)
    heartbeat = _float(env, "WORKER_HEARTBEAT_SECONDS", min(10.0, lease / 3))
    if lease <= 0 or heartbeat <= 0:
        raise ConfigError("WORKER_LEASE_SECONDS and WORKER_HEARTBEAT_SECONDS must be positive")
    if heartbeat * 2 > lease:
        raise ConfigError(
            f"WORKER_HEARTBEAT_SECONDS={heartbeat:g} must be at most half of "
            f"WORKER_LEASE_SECONDS={lease:g}, or one late heartbeat loses the lease"
        )
    backend = env.get("FEEDBACK_BACKEND", "local")
    if backend not in {"local", "openai"}:
        raise ConfigError(f"FEEDBACK_BACKEND must be 'local' or 'openai', got {backend!r}")
    settings = Settings(
        database_url=Secret(_secret(env, "DATABASE_URL")),
        concurrency=concurrency,
        lease_seconds=lease,
        heartbeat_seconds=heartbeat,
        max_attempts=_int(env, "WORKER_MAX_ATTEMPTS", 5, minimum=1),
        shutdown_timeout_seconds=_float(env, "WORKER_SHUTDOWN_TIMEOUT_SECONDS", 20.0, minimum=0),
        handlers=env.get("WORKER_HANDLERS", ""),
        http_port=_int(env, "WORKER_HTTP_PORT", 8080, minimum=0, maximum=65535),
        global_max_inflight=_int(env, "WORKER_GLOBAL_MAX_INFLIGHT", 0, minimum=0),
        poll_seconds=_float(env, "WORKER_POLL_SECONDS", 2.0, minimum=0.01),
        backoff_base_seconds=_float(env, "WORKER_BACKOFF_BASE_SECONDS", 2.0, minimum=0),
        backoff_max_seconds=_float(env, "WORKER_BACKOFF_MAX_SECONDS", 600.0, minimum=0),
        worker_id=env.get("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
        log_level=env.get("WORKER_LOG_LEVEL", "INFO").upper(),
        feedback_backend=backend,
        openai_base_url=env.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
        openai_model=env.get("OPENAI_MODEL", "gpt-4o-mini"),
        openai_api_key=Secret(_secret(env, "OPENAI_API_KEY")),
        openai_timeout_seconds=_float(env, "OPENAI_TIMEOUT_SECONDS", 60.0, minimum=0.1),
        openai_max_retries=_int(env, "OPENAI_MAX_RETRIES", 3, minimum=0),
        job_timeout_seconds=_float(env, "WORKER_JOB_TIMEOUT_SECONDS", 600.0, minimum=0),
        job_timeouts=_kind_seconds(env, "WORKER_JOB_TIMEOUTS"),
        statement_timeout_seconds=_float(
            env, "WORKER_STATEMENT_TIMEOUT_SECONDS", 10.0, minimum=0.1
        ),
        retention_succeeded_seconds=_duration(env, "WORKER_RETENTION_SUCCEEDED", 7 * 86400.0),
        retention_failed_seconds=_duration(env, "WORKER_RETENTION_FAILED", 30 * 86400.0),
        cache_ttl_seconds=_duration(env, "WORKER_CACHE_TTL", 30 * 86400.0),
        retention_interval_seconds=_float(
            env, "WORKER_RETENTION_INTERVAL_SECONDS", 60.0, minimum=0.1
        ),
        warnings=tuple(notes),
    )
    return settings


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds, or a number with a unit: `90s`, `15m`, `12h`, `7d`; 0 means forever."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    unit = _UNITS.get(raw[-1])
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        raise ConfigError(
            f"{name} must be a duration like 3600, 90m, 12h or 7d, got {raw!r}"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite duration of at least 0, got {raw!r}")
    return value


def _kind_seconds(env: Mapping[str, str], name: str) -> tuple[tuple[str, float], ...]:
    """`kind=seconds,...` -> ((kind, seconds), ...); kinds follow the job kind pattern."""
    from .models import KIND_PATTERN  # models has no settings import; keep the cycle out

    pairs: dict[str, float] = {}
    for raw in env.get(name, "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        kind, eq, seconds = (p.strip() for p in entry.partition("="))
        if not eq or not KIND_PATTERN.match(kind):
            raise ConfigError(f"{name} entry {entry!r}: expected kind=seconds")
        try:
            value = float(seconds)
        except ValueError:
            raise ConfigError(f"{name} entry {entry!r}: {seconds!r} is not a number") from None
        if not value >= 0 or value == float("inf") or kind in pairs:
            raise ConfigError(f"{name} entry {entry!r}: a finite number >= 0, each kind once")
        pairs[kind] = value
    return tuple(pairs.items())


def _secret(env: Mapping[str, str], name: str) -> str:
    """`NAME` beats `NAME_FILE`; a `NAME_FILE` pointing nowhere counts as unset."""
    if value := env.get(name, ""):
        return value
    path = env.get(f"{name}_FILE", "")
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None


def _int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={value} is out of range [{minimum}, {maximum}]")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value:g} must be at least {minimum:g}")
    return value
