"""Command line: migrate, run, enqueue, cancel, status, stats, retry-failed.

Errors become exit codes here; enqueue, cancel and status go through `api`, as the platform's
backend does."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import FrameType

import psycopg

from . import api, db, handlers, logs, migrate
from .declare import help_text
from .errors import EXIT_INTERNAL, EXIT_OK, ConfigError, InvalidJob, WorkerError
from .httpserver import HealthServer
from .metrics import Metrics
from .queries import Q
from .settings import Settings, from_env
from .worker import Worker

log = logging.getLogger("learnops_worker")

EXIT_CODES = """exit codes:
  0  ok (also after a SIGTERM drain)
  1  internal error
  2  configuration error (settings, WORKER_HANDLERS, missing schema), or a refused job
     (bad --kind, --payload too large, too deep or not JSON)
  3  database unreachable or statement failed
  4  heartbeats failed for almost a whole lease; the worker stopped itself
  5  no such job (cancel, status)
  6  the stop overran WORKER_SHUTDOWN_TIMEOUT_SECONDS plus its margin; the process ended itself"""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup("INFO")  # so that a configuration error is a JSON line too
    try:
        settings = from_env()
        logs.setup(settings.log_level)
        for note in settings.warnings:
            log.warning(note, extra={"event": "config.warning"})
        return int(args.func(settings, args))
    except WorkerError as exc:
        log.error(str(exc), extra={"event": "worker.error", "error_type": type(exc).__name__})
        return exc.exit_code
    except Exception as exc:  # a bug: say so in one JSON line, never a secret-bearing repr
        log.critical(
            "internal error",
            extra={"event": "worker.internal_error", "error_type": type(exc).__name__},
            exc_info=True,
        )
        return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="learning-worker",
        description="Leased PostgreSQL jobs (settings: environment, see docs/worker.md).",
        epilog=f"{help_text(Settings)}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the schema (idempotent)").set_defaults(func=cmd_migrate)
    sub.add_parser("run", help="run the worker until SIGTERM").set_defaults(func=cmd_run)
    e = sub.add_parser("enqueue", help="add a job; prints its id")
    e.add_argument("--kind", required=True)
    e.add_argument("--payload", default="{}", help="JSON document")
    e.add_argument("--priority", type=int, default=0, help="higher runs first")
    e.add_argument(
        "--run-after", help="ISO-8601 time, or seconds from now (by the database's clock)"
    )
    e.add_argument("--dedupe-key", help="idempotency key: the same (kind, key) is one job")
    e.set_defaults(func=cmd_enqueue)
    c = sub.add_parser("cancel", help="cancel a queued job, or mark a running one; prints status")
    c.add_argument("job_id", type=int)
    c.set_defaults(func=cmd_cancel)
    st = sub.add_parser("status", help="one job as JSON")
    st.add_argument("job_id", type=int)
    st.set_defaults(func=cmd_status)
    s = sub.add_parser("stats", help="counts by status and kind, oldest queued age, leases")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)
    r = sub.add_parser("retry-failed", help="requeue failed jobs with fresh attempts")
    r.add_argument("--kind")
    r.set_defaults(func=cmd_retry_failed)
    return p


@contextlib.contextmanager
def _connection(settings: Settings, purpose: str) -> Iterator[db.Connection]:
    try:
        with db.connect(settings, purpose=purpose) as conn:
            yield conn
    except psycopg.Error as exc:
        raise db.translate(exc) from None


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    migrate.run(settings)
    return EXIT_OK


def cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidJob(f"--payload is not valid JSON ({_reason(exc)})") from None
    run_after = _parse_when(args.run_after) if args.run_after else None
    api.check_kind(args.kind)  # before connecting: a typo needs no database
    with _connection(settings, "enqueue") as conn:
        job_id = api.enqueue(
            conn,
            args.kind,
            payload,
            dedupe_key=args.dedupe_key,
            priority=args.priority,
            run_after=run_after,
        )
    print(job_id)
    return EXIT_OK


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at {exc.pos}"
    return str(exc) if isinstance(exc, ValueError) else "nested too deeply"


def _parse_when(text: str) -> float | datetime:
    """Seconds from now (added to the database's clock), or an ISO-8601 time."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--run-after {text!r} is neither seconds nor an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    with _connection(settings, "cancel") as conn:
        status = api.cancel(conn, args.job_id)
    print(status.value)
    return EXIT_OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    with _connection(settings, "status") as conn:
        info = api.status(conn, args.job_id)
    print(json.dumps(info.as_json(), default=str))
    return EXIT_OK


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    with _connection(settings, "stats") as conn:
        by = conn.execute(Q.stats_by_status_kind).fetchall()
        oldest_row = conn.execute(Q.stats_oldest_queued).fetchone()
        leases_row = conn.execute(Q.stats_leases).fetchone()
        unhandled = conn.execute(Q.stats_unhandled).fetchall()
        live = conn.execute(Q.stats_workers).fetchall()
    oldest = oldest_row[0] if oldest_row else None
    active, expired = leases_row if leases_row else (0, 0)
    stats = {
        "jobs": [{"status": s, "kind": k, "count": n} for s, k, n in by],
        "oldest_queued_seconds": None if oldest is None else round(oldest, 3),
        "leases": {"active": active, "expired": expired},
        "workers": [
            {"worker_id": w, "kinds": list(k), "concurrency": c, "seen_at": seen.isoformat()}
            for w, k, c, seen in live
        ],
        # Queued kinds no live worker handles: these jobs wait until one that does starts.
        "unhandled": [{"kind": k, "count": n} for k, n in unhandled],
    }
    if args.json:
        print(json.dumps(stats))
        return EXIT_OK
    print(f"{'STATUS':<10} {'KIND':<24} {'COUNT':>8}")
    for s, k, n in by:
        print(f"{s:<10} {k:<24} {n:>8}")
    print(f"oldest queued: {'-' if oldest is None else f'{oldest:.1f}s'}")
    print(f"leases: {active} active, {expired} expired")
    print(f"live workers: {len(live)}")
    for k, n in unhandled:
        print(f"UNHANDLED: {n} queued job(s) of kind {k!r}: no live worker handles it")
    return EXIT_OK


def cmd_retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    with _connection(settings, "retry-failed") as conn:
        rows = conn.execute(Q.retry_failed, {"kind": args.kind}).fetchall()
    print(len(rows))
    log.info("failed jobs requeued", extra={"event": "jobs.retry_failed", "count": len(rows)})
    return EXIT_OK


def cmd_run(settings: Settings, _: argparse.Namespace) -> int:
    table = handlers.load(settings.handlers)
    with _connection(settings, "startup") as conn:
        present = conn.execute(Q.schema_present).fetchone()
    if not present or not present[0]:
        raise ConfigError("the job tables are missing; run `learning-worker migrate` first")
    metrics = Metrics()
    worker = Worker(settings, table, metrics)
    metrics.watch_depth(lambda: _depth(settings))
    metrics.watch_unhandled(lambda: _unhandled(settings))
    server = None
    if settings.http_port:
        try:
            server = HealthServer(
                settings.http_port, metrics.registry, worker.healthy, worker.ready
            )
        except OSError as exc:
            port = settings.http_port
            raise ConfigError(f"WORKER_HTTP_PORT={port}: cannot listen ({exc.strerror})") from None
        server.start()
    try:
        with _stop_on_signals(worker):
            worker.run()
    finally:
        if server is not None:
            server.stop()
    return EXIT_OK


def _depth(settings: Settings) -> dict[str, int]:
    with db.connect(settings, purpose="metrics", connect_timeout=2) as conn:
        return {s: n for s, n in conn.execute(Q.depth_by_status).fetchall()}


def _unhandled(settings: Settings) -> dict[str, int]:
    with db.connect(settings, purpose="metrics", connect_timeout=2) as conn:
        return {k: n for k, n in conn.execute(Q.stats_unhandled).fetchall()}


@contextlib.contextmanager
def _stop_on_signals(worker: Worker) -> Iterator[None]:
    """First SIGTERM/SIGINT drains; a second one releases at once."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        worker.request_stop(name, immediate=worker.stopping.is_set())

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
