"""Job handlers: the built-ins, WORKER_HANDLERS parsing, and what a handler receives.

A handler is `def handle(ctx: JobContext) -> JSON-able | None`. It may raise RetryLater
or PermanentFailure (errors.py); any other exception (BaseException too) is retried with
backoff. It should watch `ctx.cancelled` if it runs long.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .errors import HandlerSpecError
from .models import KIND_PATTERN, Job, JsonValue
from .settings import Settings

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ResultCache(Protocol):
    """Provider answers by input; see cache.py."""

    def get_or_compute(
        self,
        *,
        handler: str,
        backend: str,
        model: str,
        inputs: JsonValue,
        compute: Callable[[], JsonValue],
    ) -> JsonValue: ...


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the job, its payload, settings, the result cache, events to watch."""

    job: Job
    payload: JsonValue
    settings: Settings
    cache: ResultCache
    lease_lost: threading.Event
    """Set when a heartbeat found the lease taken over; the result will be discarded."""
    stopping: threading.Event
    """Set on SIGTERM; a long handler may finish early by raising RetryLater."""
    cancelled: threading.Event
    """Set when the job was cancelled or ran past its timeout: stop, the result is discarded."""


Handler = Callable[[JobContext], JsonValue]


def noop(ctx: JobContext) -> JsonValue:
    """Does nothing; for smoke tests and benchmarks."""
    return None


def builtins() -> dict[str, Handler]:
    from . import feedback  # local: feedback pulls in the HTTP client only when used

    return {"feedback": feedback.handle, "noop": noop}


def parse_spec(spec: str) -> dict[str, tuple[str, str]]:
    """`kind=module:function,...` -> {kind: (module, function)}; raises HandlerSpecError."""
    parsed: dict[str, tuple[str, str]] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        kind, eq, target = (part.strip() for part in entry.partition("="))
        if not eq:
            raise HandlerSpecError(
                f"WORKER_HANDLERS entry {entry!r} has no '='; expected kind=module:function"
            )
        if not KIND_PATTERN.match(kind):
            raise HandlerSpecError(f"WORKER_HANDLERS entry {entry!r}: invalid kind {kind!r}")
        module, colon, func = target.partition(":")
        if not colon or not _DOTTED.match(module) or not func.isidentifier():
            raise HandlerSpecError(
                f"WORKER_HANDLERS entry {entry!r}: target must be module:function, got {target!r}"
            )
        if kind in parsed:
            raise HandlerSpecError(f"WORKER_HANDLERS names kind {kind!r} twice")
        parsed[kind] = (module, func)
    return parsed


def load(spec: str, base: Mapping[str, Handler] | None = None) -> dict[str, Handler]:
    """Built-ins extended (or replaced, for the same kind) by the spec's handlers."""
    handlers = dict(builtins() if base is None else base)
    for kind, (module_name, func_name) in parse_spec(spec).items():
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, but also a SyntaxError in the module
            raise HandlerSpecError(
                f"WORKER_HANDLERS kind {kind!r}: cannot import module {module_name!r} "
                f"({type(exc).__name__}: {exc})"
            ) from None
        func = getattr(module, func_name, None)
        if func is None:
            raise HandlerSpecError(
                f"WORKER_HANDLERS kind {kind!r}: module {module_name!r} has no {func_name!r}"
            )
        if not callable(func):
            raise HandlerSpecError(
                f"WORKER_HANDLERS kind {kind!r}: {module_name}:{func_name} is not callable"
            )
        handlers[kind] = func
    return handlers
