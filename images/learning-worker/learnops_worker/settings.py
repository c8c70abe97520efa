"""The one settings object of a worker process, built once in `main()` from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from .declare import Parse, read, setting
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


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(name: str, text: str) -> float:
    """Seconds, or a number with a unit: `90s`, `15m`, `12h`, `7d`; 0 means forever."""
    raw = text.lower()
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


def _kind_seconds(name: str, text: str) -> tuple[tuple[str, float], ...]:
    """`kind=seconds,...` -> ((kind, seconds), ...); kinds follow the job kind pattern."""
    from .models import KIND_PATTERN  # models has no settings import; keep the cycle out

    pairs: dict[str, float] = {}
    for raw in text.split(","):
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


def _text(_: str, raw: str) -> str:
    return raw


def _secret(_: str, raw: str) -> Secret:
    return Secret(raw)


def _bounded_int(minimum: int, maximum: int | None = None) -> Parse:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(f"{name}={value} is out of range [{minimum}, {maximum}]")
        return value

    return parse


def _bounded_float(minimum: float) -> Parse:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if value < minimum:
            raise ConfigError(f"{name}={value:g} must be at least {minimum:g}")
        return value

    return parse


def _concurrency(name: str, raw: str) -> int:
    value: int = _bounded_int(-(2**31))(name, raw)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _positive(name: str, raw: str) -> float:
    value: float = _bounded_float(float("-inf"))(name, raw)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _choice(*allowed: str) -> Parse:
    def parse(name: str, raw: str) -> str:
        if raw not in allowed:
            raise ConfigError(f"{name} must be {' or '.join(map(repr, allowed))}, got {raw!r}")
        return raw

    return parse


def _level(_: str, raw: str) -> str:
    return raw.upper()


def _base_url(_: str, raw: str) -> str:
    return raw.rstrip("/")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    """Worker settings: the variable, its default and why, declared once per field
    (declare.py); docs/worker.md and .env.example describe them."""

    database_url: Secret = setting(
        "DATABASE_URL", "", _secret,
        "libpq URL or conninfo of the job database (required); a plain DATABASE_URL beats "
        "DATABASE_URL_FILE, a missing file counts as unset.",
        value=Secret(""), secret=True,
    )  # fmt: skip
    concurrency: int = setting(
        "WORKER_CONCURRENCY", "1", _concurrency,
        f"Jobs run at once by this process; larger values are clamped to the cap of "
        f"{CONCURRENCY_CAP} with a warning (scale out with replicas).",
    )  # fmt: skip
    lease_seconds: float = setting(
        "WORKER_LEASE_SECONDS", "30", _positive,
        "Seconds a claim stays valid without a heartbeat; a dead worker's job waits this long.",
    )  # fmt: skip
    heartbeat_seconds: float = setting(
        "WORKER_HEARTBEAT_SECONDS", "10", _positive,
        "Seconds between lease extensions, at most half of WORKER_LEASE_SECONDS "
        "(unset: min(10, lease/3)).",
    )  # fmt: skip
    max_attempts: int = setting(
        "WORKER_MAX_ATTEMPTS", "5", _bounded_int(1),
        "Attempts (claims) before a job becomes failed.",
    )  # fmt: skip
    shutdown_timeout_seconds: float = setting(
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS", "20", _bounded_float(0),
        "Drain time after SIGTERM; keep it below the pod's terminationGracePeriodSeconds.",
    )  # fmt: skip
    handlers: str = setting(
        "WORKER_HANDLERS", "", _text,
        "Extra or replacing job handlers, `kind=module:function,...`; empty: the built-in ones.",
        value="",
    )  # fmt: skip
    http_port: int = setting(
        "WORKER_HTTP_PORT", "8080", _bounded_int(0, 65535),
        "Port of /healthz, /readyz and /metrics; 0 disables the HTTP server.",
    )  # fmt: skip
    global_max_inflight: int = setting(
        "WORKER_GLOBAL_MAX_INFLIGHT", "0", _bounded_int(0),
        "Running jobs across all workers, enforced by a unique slot index; 0 = no cap.",
    )  # fmt: skip
    poll_seconds: float = setting(
        "WORKER_POLL_SECONDS", "2", _bounded_float(0.01),
        "Polling backstop in seconds when no NOTIFY arrives (also how soon delayed jobs start).",
    )  # fmt: skip
    backoff_base_seconds: float = setting(
        "WORKER_BACKOFF_BASE_SECONDS", "2", _bounded_float(0),
        "First retry delay in seconds; doubles per attempt (with jitter).",
    )  # fmt: skip
    backoff_max_seconds: float = setting(
        "WORKER_BACKOFF_MAX_SECONDS", "600", _bounded_float(0),
        "Retry delays (a handler's RetryLater delay too) never exceed this many seconds.",
    )  # fmt: skip
    worker_id: str = setting(
        "WORKER_ID", "", _text,
        "Name written into claimed rows and logs (the pod name in Kubernetes); "
        "unset: <hostname>-<pid>.",
        factory=_default_worker_id,
    )  # fmt: skip
    log_level: str = setting("WORKER_LOG_LEVEL", "INFO", _level, "Python log level name.")
    feedback_backend: str = setting(
        "FEEDBACK_BACKEND", "local", _choice("local", "openai"),
        "How feedback is produced: `local` (rubric and keywords, no network) or `openai`.",
    )  # fmt: skip
    openai_base_url: str = setting(
        "OPENAI_BASE_URL", "https://api.openai.com/v1", _base_url,
        "Base URL of an OpenAI-compatible API (FEEDBACK_BACKEND=openai).",
    )  # fmt: skip
    openai_model: str = setting(
        "OPENAI_MODEL", "gpt-4o-mini", _text,
        "Model name sent to the provider; also part of the result cache key.",
    )  # fmt: skip
    openai_api_key: Secret = setting(
        "OPENAI_API_KEY", "", _secret,
        "API key of the provider; a plain OPENAI_API_KEY beats OPENAI_API_KEY_FILE.",
        value=Secret(""), secret=True,
    )  # fmt: skip
    openai_timeout_seconds: float = setting(
        "OPENAI_TIMEOUT_SECONDS", "60", _bounded_float(0.1),
        "Per-request timeout towards the provider, in seconds.",
    )  # fmt: skip
    openai_max_retries: int = setting(
        "OPENAI_MAX_RETRIES", "3", _bounded_int(0),
        "Retries on 429/5xx/network errors before the job is retried later.",
    )  # fmt: skip
    job_timeout_seconds: float = setting(
        "WORKER_JOB_TIMEOUT_SECONDS", "600", _bounded_float(0),
        "Seconds a handler may run before its attempt ends (retried, or failed after the "
        "last one); 0 = no timeout.",
    )  # fmt: skip
    job_timeouts: tuple[tuple[str, float], ...] = setting(
        "WORKER_JOB_TIMEOUTS", "", _kind_seconds,
        "Per-kind timeouts overriding WORKER_JOB_TIMEOUT_SECONDS, `kind=seconds,...`.",
        value=(),
    )  # fmt: skip
    statement_timeout_seconds: float = setting(
        "WORKER_STATEMENT_TIMEOUT_SECONDS", "10", _bounded_float(0.1),
        "Server-side statement_timeout of every worker statement, in seconds; the client "
        "gives up shortly after.",
    )  # fmt: skip
    retention_succeeded_seconds: float = setting(
        "WORKER_RETENTION_SUCCEEDED", "7d", _duration,
        "Succeeded and cancelled jobs are deleted this long after they finished (seconds, or "
        "90m, 12h, 7d); 0 = keep.",
    )  # fmt: skip
    retention_failed_seconds: float = setting(
        "WORKER_RETENTION_FAILED", "30d", _duration,
        "Failed jobs are deleted this long after they failed; 0 = keep.",
    )  # fmt: skip
    cache_ttl_seconds: float = setting(
        "WORKER_CACHE_TTL", "30d", _duration,
        "Result cache rows are deleted this long after they were stored; 0 = keep.",
    )  # fmt: skip
    retention_interval_seconds: float = setting(
        "WORKER_RETENTION_INTERVAL_SECONDS", "60", _bounded_float(0.1),
        "Seconds between retention rounds; one worker of all prunes per round.",
    )  # fmt: skip
    warnings: tuple[str, ...] = ()
    """Non-fatal configuration notes, logged once at start (not a setting)."""

    def timeout_for(self, kind: str) -> float:
        """The job timeout of `kind` in seconds (0 = none)."""
        for name, seconds in self.job_timeouts:
            if name == kind:
                return seconds
        return self.job_timeout_seconds


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, the required DATABASE_URL included; raises
    ConfigError naming the bad variable (never a secret's value)."""
    env = os.environ if env is None else env
    values = read(Settings, env)
    notes: list[str] = []
    concurrency = values.get("concurrency", 1)
    if concurrency > CONCURRENCY_CAP:
        notes.append(
            f"WORKER_CONCURRENCY={concurrency} exceeds the cap of {CONCURRENCY_CAP}; "
            f"using {CONCURRENCY_CAP} (run more replicas to scale out)"
        )
        values["concurrency"] = CONCURRENCY_CAP
    defaults = Settings()
    lease = values.get("lease_seconds", defaults.lease_seconds)
    heartbeat = values.setdefault("heartbeat_seconds", min(defaults.heartbeat_seconds, lease / 3))
    if heartbeat * 2 > lease:
        raise ConfigError(
            f"WORKER_HEARTBEAT_SECONDS={heartbeat:g} must be at most half of "
            f"WORKER_LEASE_SECONDS={lease:g}, or one late heartbeat loses the lease"
        )
    if not values.get("database_url"):
        raise ConfigError("DATABASE_URL (or DATABASE_URL_FILE) is not set")
    return Settings(**values, warnings=tuple(notes))
