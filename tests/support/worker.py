"""Helpers for the worker tests: migrated databases, worker subprocesses, a fake
OpenAI-compatible server, a PostgreSQL of one's own and a black-hole proxy."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from learnops_worker import migrate
from psycopg.types.json import Jsonb

from tests.harness.net import wait_port
from tests.harness.postgres import Conn, PgCluster

ROOT = Path(__file__).resolve().parents[2]

# Every write to succeeded is recorded by this trigger: "completed twice" becomes countable.
SIDE_TABLES = """
CREATE TABLE worker_test_executions (
    job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE worker_test_completions (
    job_id bigint NOT NULL, attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION worker_test_record_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO worker_test_completions (job_id, attempt) VALUES (NEW.id, NEW.attempts);
    RETURN NULL;
END $$;
CREATE TRIGGER worker_test_completion AFTER UPDATE ON learnops_jobs
    FOR EACH ROW WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION worker_test_record_completion();
"""

# Short leases keep crash tests fast; the heartbeat stays well inside the lease.
FAST = {
    "WORKER_LEASE_SECONDS": "1",
    "WORKER_HEARTBEAT_SECONDS": "0.25",
    "WORKER_POLL_SECONDS": "0.2",
    "WORKER_BACKOFF_BASE_SECONDS": "0.05",
    "WORKER_BACKOFF_MAX_SECONDS": "0.5",
    "WORKER_SHUTDOWN_TIMEOUT_SECONDS": "5",
    "WORKER_HANDLERS": ",".join(
        f"{kind}=tests.support.worker_handlers:{func}"
        for kind, func in {
            "record": "record",
            "flaky": "flaky",
            "permanent": "permanent",
            "later": "later",
            "poison": "poison",
            "nul-error": "nul_error",
            "huge-delay": "huge_delay",
            "surrogate": "surrogate",
            "sysexit": "sysexit",
            "forever": "forever",
            "until-cancelled": "until_cancelled",
            "chaos": "chaos",
        }.items()
    ),
}


def connect(conn: Conn) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(**conn.kwargs(), autocommit=True)  # type: ignore[arg-type]


def migrated(conn: Conn) -> None:
    """Apply the migrations in-process (the `migrate` subcommand has its own tests), then add
    the test side tables."""
    with connect(conn) as c:
        migrate.apply(c)
        c.execute(SIDE_TABLES.encode())


def worker_env(conn: Conn, **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "WORKER_", "DATABASE_URL", "OPENAI_", "FEEDBACK_"))
    }
    return {**base, "DATABASE_URL": conn.url(), "WORKER_HTTP_PORT": "0", **FAST, **extra}


def run_cli(conn: Conn, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learnops_worker", *args],
        env=worker_env(conn, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def enqueue(conn: Conn, kind: str, payloads: list[Any], *, priority: int = 0) -> list[int]:
    with connect(conn) as c, c.cursor() as cur:
        cur.executemany(
            "INSERT INTO learnops_jobs (kind, payload, priority) VALUES (%s, %s, %s) RETURNING id",
            [(kind, Jsonb(p), priority) for p in payloads],
            returning=True,
        )
        ids = []
        while True:
            row = cur.fetchone()
            assert row is not None
            ids.append(int(row[0]))
            if not cur.nextset():
                return ids


def scalar(conn: Conn, query: str, *params: Any) -> Any:
    """First column of the first row; None for no row or a statement without rows."""
    with connect(conn) as c:
        cur = c.execute(query.encode(), params)
        row = cur.fetchone() if cur.description else None
    return None if row is None else row[0]


@dataclass
class WorkerProc:
    """One `learning-worker run` subprocess; stderr (JSON logs) goes to a file."""

    conn: Conn
    env: dict[str, str]
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self, *, wait: bool = True) -> WorkerProc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "learnops_worker", "run"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        if self.http_port and wait:
            wait_port(self.http_port, 20)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def metric(self, name: str) -> float:
        """Sum of all samples of a metric (over labels) from /metrics."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.wait()


# -- a fake OpenAI-compatible provider -----------------------------------------
@dataclass
class FakeProvider:
    """Answers /v1/chat/completions; `script` lists (status, headers) to return before 200."""

    api_key: str
    port: int = 0
    calls: int = 0
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    bad_auth: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    content: str | None = None
    """The answer's message content; None: a well-formed feedback object."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextlib.contextmanager
def running_fake_provider() -> Iterator[FakeProvider]:
    """A FakeProvider served on a free loopback port, with a fresh canary API key."""
    fake = FakeProvider(api_key="sk-canary-" + os.urandom(6).hex())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                fake.calls += 1
                fake.bodies.append(body)
                step = fake.script.pop(0) if fake.script else (200, {})
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    fake.bad_auth += 1
            status, headers = step
            if self.path != "/v1/chat/completions":
                status = 404
            if status == 200:
                feedback = {"score": 7, "max_score": 10, "summary": "good", "criteria": []}
                content = json.dumps(feedback) if fake.content is None else fake.content
                answer = {"choices": [{"message": {"role": "assistant", "content": content}}]}
                payload = json.dumps(answer).encode()
            else:
                payload = b'{"error": {"message": "try again"}}'
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


# -- a PostgreSQL of one's own, to stop, restart and black-hole -----------------------------
@dataclass
class OwnPostgres:
    """A private cluster (tests that stop or restart the server must not share one)."""

    cluster: PgCluster
    db: Conn

    def _opts(self) -> str:
        c = self.cluster
        return (
            f"-p {c.port} -k {c.sockdir} -c listen_addresses={c.host} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=128MB"
        )

    def stop(self) -> None:
        """Immediate stop: backends die, as in a crash."""
        self.cluster._pg("pg_ctl", "-D", str(self.cluster.data), "-m", "immediate", "-w", "stop")

    def start(self) -> None:
        c = self.cluster
        c._pg("pg_ctl", "-D", str(c.data), "-l", str(c.logfile), "-o", self._opts(), "-w", "start")

    def restart(self) -> None:
        """`pg_ctl restart -m immediate`: every connection is cut, the server comes back."""
        c = self.cluster
        c._pg(
            "pg_ctl", "-D", str(c.data), "-l", str(c.logfile), "-o", self._opts(),
            "-m", "immediate", "-w", "restart",
        )  # fmt: skip


def env_for(conn: Conn, url: str | None = None, **extra: str) -> dict[str, str]:
    """worker_env with an explicit DATABASE_URL (e.g. through a proxy)."""
    env = worker_env(conn, **extra)
    if url is not None:
        env["DATABASE_URL"] = url
    return env


class BlackHoleProxy:
    """A loopback TCP proxy that can stop forwarding without closing anything: the peer
    sees no RST, no FIN, no answer, as behind a dead middlebox."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._forward = threading.Event()
        self._forward.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, conn: Conn) -> str:
        return f"postgresql://{conn.user}:{conn.password}@127.0.0.1:{self.port}/{conn.dbname}"

    def black_hole(self) -> None:
        self._forward.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if not self._forward.is_set():
                # Swallow nothing, answer nothing: data piles up in the kernel buffers.
                self._closed.wait(0.2)
                continue
            ready, _, _ = select.select([src], [], [], 0.2)
            if not ready or not self._forward.is_set():
                continue
            try:
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
