"""/healthz, /readyz and /metrics on a stdlib HTTP server in a daemon thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, dict[str, object]]]


class HealthServer:
    def __init__(
        self, port: int, registry: CollectorRegistry, healthz: Probe, readyz: Probe
    ) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, details = (outer.healthz if path == "/healthz" else outer.readyz)()
                    body = json.dumps({"ok": ok, **details}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the job log

        self.registry = registry
        self.healthz = healthz
        self.readyz = readyz
        # All interfaces: kubelet probes and Prometheus scrape the pod IP.
        self._server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)  # noqa: S104
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("http server listening", extra={"event": "http.listening", "port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
