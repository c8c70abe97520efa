"""Every exception of the worker, one place; each docstring is the default message.

Exit codes (documented in docs/worker.md) are attached to the process-level errors
and mapped at the edge in `cli.main`:

    0 ok (also after a SIGTERM drain)   1 internal error (bug)
    2 configuration                     3 database unreachable at start
    4 heartbeats failed for almost a whole lease, the worker stopped itself
    5 no such job (cancel/status)
    6 the stop overran WORKER_SHUTDOWN_TIMEOUT_SECONDS plus its margin; the process ended itself
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_HEARTBEAT = 4
EXIT_NOT_FOUND = 5
EXIT_SHUTDOWN_OVERRUN = 6


class WorkerError(Exception):
    """The learning worker failed."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(WorkerError):
    """The worker configuration is invalid."""

    exit_code = EXIT_CONFIG


class HandlerSpecError(ConfigError):
    """WORKER_HANDLERS is invalid; expected `kind=module:function,...`."""


class DatabaseUnavailable(WorkerError):
    """The database is unreachable or refused the connection."""

    exit_code = EXIT_DATABASE


class HeartbeatLost(WorkerError):
    """Heartbeats failed for almost a whole lease; the worker stopped before leases expired."""

    exit_code = EXIT_HEARTBEAT


class InvalidJob(WorkerError):
    """The job was refused: its kind or payload is invalid."""

    exit_code = EXIT_CONFIG


class InvalidKind(InvalidJob):
    """The job kind is invalid; kinds match ^[a-z][a-z0-9_.-]{0,63}$."""


class InvalidPayload(InvalidJob):
    """The payload is not storable JSON within the size and depth limits."""


class JobNotFound(WorkerError):
    """No job has that id (it may have been pruned by retention)."""

    exit_code = EXIT_NOT_FOUND


# -- raised by handlers -----------------------------------------------------
class HandlerError(Exception):
    """A job handler failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class RetryLater(HandlerError):
    """The handler asked to retry the job later."""

    def __init__(self, message: str | None = None, *, delay_seconds: float | None = None) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


class PermanentFailure(HandlerError):
    """The job cannot succeed; it fails without further attempts."""


class ProviderError(RetryLater):
    """The AI provider did not answer usefully; retry later."""
