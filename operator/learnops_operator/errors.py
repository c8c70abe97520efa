"""Every exception the operator raises on purpose; the docstring is the default message.

Exit codes of the `learnops-operator` process (mapped in cli.main): EXIT_CODES.
"""

from __future__ import annotations

EXIT_CODES = """exit codes:
  0  clean shutdown
  1  internal error
  2  configuration error (a setting, or no cluster credentials)
  3  this replica lost the leader Lease"""


class OperatorError(Exception):
    """learnops-operator failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(OperatorError):
    """Invalid operator configuration."""

    exit_code = 2


class LeadershipLost(OperatorError):
    """This replica lost the leader Lease; exiting so that a clean process can queue up again."""

    exit_code = 3


class InvalidSpec(OperatorError):
    """The DatabaseBackup spec is invalid."""


class MissingReference(OperatorError):
    """A resource the DatabaseBackup refers to does not exist."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
