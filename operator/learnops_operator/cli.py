"""`learnops-operator`: settings, JSON logs, leader election, then kopf plus the periodic sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

import kopf
from aiohttp import web
from kopf._core.engines.peering import Identity  # not re-exported by kopf
from kubernetes import client, config

from learnops_operator import handlers, metrics, preflight, sweep
from learnops_operator.context import Context
from learnops_operator.election import LeaseElector
from learnops_operator.errors import ConfigError, LeadershipLost, OperatorError
from learnops_operator.kube import Kube
from learnops_operator.settings import Settings, from_args

log = logging.getLogger("learnops_operator")
assert handlers  # imported for its kopf registrations


class _EventKey(logging.Filter):
    """Every line carries a stable `event` key, also kopf's own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "event"):
            record.event = "kopf.log" if record.name.startswith("kopf") else "operator.log"
        return True


def configure_logging(settings: Settings) -> None:
    kopf.configure(
        verbose=settings.verbose,
        debug=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_json else kopf.LogFormat.PLAIN,
        log_refkey="object",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_EventKey())
    # kopf's per-object INFO lines ("Handler succeeded") would dwarf ours at 500 objects.
    if not settings.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)


def api_client(settings: Settings) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    # One connection per handler thread plus the sweep, instead of urllib3's small default.
    cfg.connection_pool_maxsize = settings.worker_threads + 4
    return client.ApiClient(cfg)


async def _sweep_loop(ctx: Context, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ctx.settings.sweep_interval_seconds)
        if not stop.is_set():
            await asyncio.to_thread(sweep.sweep, ctx)


async def _lead(ctx: Context, stop: asyncio.Event, readiness: preflight.Readiness) -> None:
    s = ctx.settings
    sweeper = asyncio.create_task(_sweep_loop(ctx, stop))
    started = asyncio.Event()  # kopf raises it after its start-up, as its watchers begin

    async def report_ready() -> None:
        await started.wait()
        readiness.report([])

    announcer = asyncio.create_task(report_ready())
    try:
        await kopf.operator(
            ready_flag=started,
            clusterwide=s.namespace is None,
            namespaces=[s.namespace] if s.namespace else (),
            standalone=True,  # the Lease decides who runs; no kopf peering objects needed
            # Explicit: kopf's default asks getpass, which fails for a uid without a passwd entry.
            identity=Identity(s.identity),
            liveness_endpoint=f"http://0.0.0.0:{s.liveness_port}/healthz"
            if s.liveness_port
            else None,
            stop_flag=stop,
            memo=ctx,
        )
    finally:
        stop.set()
        for task in (sweeper, announcer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _standby_liveness(port: int) -> web.AppRunner | None:
    """Before leading (start-up checks, following), the process is alive: a restart would not
    help. kopf's own endpoint takes over once it leads."""
    if not port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"role": "follower"})  # not leading (yet); /readyz says more

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (probed by the kubelet)
    return runner


async def _keep_lease(elector: LeaseElector, stop: asyncio.Event, lost: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    renewed = loop.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), elector.retry)
        if stop.is_set():
            return
        if await asyncio.to_thread(elector.step):
            renewed = loop.time()
        elif loop.time() - renewed > elector.renew_deadline:
            log.error("leadership lost", extra={"event": "lease.lost"})
            lost.set()
            stop.set()
            return


async def ended(task: asyncio.Task[None]) -> None:
    """Wait for a side task to end; its cancellation is an end too, its failure is raised.

    kopf cancels the loop's other tasks when it shuts down (after 5 s), so the lease keeper may
    end cancelled instead of returning; awaiting the task itself would then raise its
    CancelledError here and skip the lease's release. Our own cancellation still propagates.
    """
    await asyncio.wait({task})
    if not task.cancelled() and (failed := task.exception()) is not None:
        raise failed


PREFLIGHT_RETRY_SECONDS = (2.0, 5.0, 10.0, 30.0)
"""Waits between start-up checks while something is missing (then every 30 s)."""


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _preflight(ctx: Context, readiness: preflight.Readiness, stop: asyncio.Event) -> None:
    """Block until the CRD and the RBAC are in place; say what is missing, once."""
    attempt = 0
    while not stop.is_set():
        found = await asyncio.to_thread(preflight.problems, ctx.kube.api, ctx.settings)
        if not found:
            return
        readiness.report(found)
        await _wait(stop, PREFLIGHT_RETRY_SECONDS[min(attempt, len(PREFLIGHT_RETRY_SECONDS) - 1)])
        attempt += 1


async def run(ctx: Context) -> None:
    s = ctx.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    readiness = preflight.Readiness()
    await readiness.serve(s.readiness_port)
    standby = await _standby_liveness(s.liveness_port)
    try:
        await _preflight(ctx, readiness, stop)
        if stop.is_set():
            return
        if not s.leader_election:
            if standby is not None:
                await standby.cleanup()
                standby = None
            await _lead(ctx, stop, readiness)
            return
        elector = LeaseElector(
            ctx.kube.api, s.lease_namespace, s.lease_name, s.identity, s.lease_duration_seconds
        )
        log.info("waiting for the lease", extra={"event": "lease.waiting", "identity": s.identity})
        while not stop.is_set() and not await asyncio.to_thread(elector.step):
            # a follower is ready (it stands by); a Lease it cannot even read is a problem
            problems = [elector.problem] if elector.problem else []
            readiness.report(problems, logged_elsewhere=True)  # the elector said it once
            await _wait(stop, elector.retry)
        if standby is not None:
            await standby.cleanup()
            standby = None
        if stop.is_set():
            return
        log.info("leading", extra={"event": "lease.acquired", "identity": s.identity})
        lost = asyncio.Event()
        keeper = asyncio.create_task(_keep_lease(elector, stop, lost))
        try:
            await _lead(ctx, stop, readiness)
        finally:
            stop.set()
            await ended(keeper)
            if not lost.is_set():
                await asyncio.to_thread(elector.release)
        if lost.is_set():
            raise LeadershipLost()
    finally:
        if standby is not None:
            await standby.cleanup()
        await readiness.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = from_args(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"learnops-operator: {exc}", file=sys.stderr)
        return exc.exit_code
    configure_logging(settings)
    try:
        ctx = Context(settings, Kube(api_client(settings), settings.identity))
        metrics.serve(settings.metrics_port)
        asyncio.run(run(ctx))
    except OperatorError as exc:
        log.error(str(exc), extra={"event": "operator.exit", "exit_code": exc.exit_code})
        return exc.exit_code
    except config.ConfigException as exc:
        log.error(
            f"no cluster credentials: {exc}", extra={"event": "operator.exit", "exit_code": 2}
        )
        return ConfigError.exit_code
    return 0
