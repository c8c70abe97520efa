"""A loopback HTTP proxy in front of a real object-storage server that injects faults.

Requests pass through unchanged (the Host header too, so signatures stay valid) unless
a rule answers them first: an HTTP error with an S3-style XML body, a slow part (to be
interrupted by SIGTERM or the deadline), or the server going away mid-upload (the proxy
stops accepting and drops every connection).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.harness.net import free_port


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    length: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def part_number(self) -> int | None:
        """S3 UploadPart (partNumber), Azure Put Block (blockid), GCS chunk: None if not a part."""
        if "partNumber" in self.query:
            return int(self.query["partNumber"][0])
        if self.query.get("comp") == ["block"]:
            return -1
        return None


@dataclass
class Answer:
    status: int
    code: str = "InternalError"
    message: str = "injected fault"


Rule = Callable[[Request, "FaultProxy"], Answer | None]


@dataclass
class FaultProxy:
    upstream_port: int
    rule: Rule | None = None
    delay_parts: float = 0.0
    """Seconds to hold every part upload (a slow network)."""
    die_after_parts: int | None = None
    """After this many part uploads went through, the server goes away."""
    port: int = field(default_factory=free_port)
    parts: int = 0
    seen: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._lock = threading.Lock()
        self._gone = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.go_away()

    def go_away(self) -> None:
        """The server vanishes: stop accepting, refuse everything from now on."""
        if self._gone.is_set():
            return
        self._gone.set()
        self._server.shutdown()
        self._server.server_close()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        req = Request(h.command, split.path, parse_qs(split.query), length, headers)
        with self._lock:
            self.seen.append(req)
            is_part = req.part_number is not None and h.command == "PUT"
            if is_part:
                self.parts += 1
            count = self.parts
        if self._gone.is_set():
            self._drop(h)
            return
        if is_part and self.die_after_parts is not None and count > self.die_after_parts:
            threading.Thread(target=self.go_away, daemon=True).start()
            self._drop(h)
            return
        if is_part and self.delay_parts:
            time.sleep(self.delay_parts)
        answer = self.rule(req, self) if self.rule else None
        if answer is not None:
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{answer.code}</Code>'
                f"<Message>{answer.message}</Message></Error>"
            ).encode()
            h.send_response(answer.status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(xml)))
            h.end_headers()
            h.wfile.write(xml)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for key, value in h.headers.items():
                conn.putheader(key, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            self._drop(h)
            return
        finally:
            conn.close()
        h.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True


def first_part(status: int, code: str) -> Rule:
    """Answer the first part upload with an error (e.g. 403 AccessDenied)."""

    def rule(req: Request, proxy: FaultProxy) -> Answer | None:
        if req.method == "PUT" and req.part_number is not None and proxy.parts == 1:
            return Answer(status, code)
        return None

    return rule


def short_part(status: int, code: str, part_bytes: int) -> Rule:
    """Answer the last (shorter than a full part) part upload with an error, every retry."""

    def rule(req: Request, _proxy: FaultProxy) -> Answer | None:
        if req.method == "PUT" and req.part_number is not None and req.length < part_bytes:
            return Answer(status, code)
        return None

    return rule


def quota(limit_bytes: int) -> Rule:
    """A full bucket: once the uploaded bytes pass the quota, writes are refused."""
    total = {"bytes": 0}

    def rule(req: Request, _proxy: FaultProxy) -> Answer | None:
        if req.method != "PUT":
            return None
        total["bytes"] += req.length
        if total["bytes"] > limit_bytes:
            return Answer(403, "QuotaExceeded", "the bucket quota is exceeded")
        return None

    return rule
