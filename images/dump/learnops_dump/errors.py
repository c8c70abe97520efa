"""Every failure the runner knows, one class per documented exit code.

The docstring of each class is its default message; `reason` is the stable
word the termination message carries (see docs/dump.md, "Exit codes").
"""

from __future__ import annotations


class RunnerError(Exception):
    """The backup runner failed."""

    exit_code = 1
    reason = "InternalError"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InternalError(RunnerError):
    """An unexpected internal error (a bug in the runner)."""

    exit_code = 1
    reason = "InternalError"


class ConfigError(RunnerError):
    """The configuration is invalid."""

    exit_code = 2
    reason = "ConfigError"


class ConnectionFailed(RunnerError):
    """Could not connect to or authenticate with the database server."""

    exit_code = 3
    reason = "ConnectionError"


class DumpFailed(RunnerError):
    """pg_dump or the compressor exited with an error."""

    exit_code = 4
    reason = "DumpError"


class TimedOut(RunnerError):
    """The run was stopped by its timeout or by SIGTERM."""

    exit_code = 5
    reason = "Timeout"


class StorageFailed(RunnerError):
    """The backup storage is missing, unwritable or full."""

    exit_code = 6
    reason = "StorageError"


class VerificationFailed(RunnerError):
    """The artifact failed verification."""

    exit_code = 7
    reason = "VerificationError"


class VersionMismatch(RunnerError):
    """The server is newer than every installed pg_dump."""

    exit_code = 8
    reason = "VersionMismatch"


class RestoreRefused(RunnerError):
    """The restore target was refused (not empty, missing, existing, or the source itself)."""

    exit_code = 9
    reason = "RestoreRefused"

    def __init__(self, message: str | None = None, *, reason: str = "RestoreRefused") -> None:
        super().__init__(message)
        self.reason = reason  # the specific refusal, e.g. TargetNotEmpty


ERRORS: tuple[type[RunnerError], ...] = (
    ConfigError,
    ConnectionFailed,
    DumpFailed,
    TimedOut,
    StorageFailed,
    VerificationFailed,
    VersionMismatch,
    RestoreRefused,
    InternalError,
)
# Every `reason` a termination message or manifest may carry (docs/dump.md, "Exit codes").
REASONS = ("Ok", *sorted({cls.reason for cls in ERRORS}))
