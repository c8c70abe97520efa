"""GCS's XML upload API in front of fake-gcs-server, which serves only the JSON upload API.

obstore (the Rust `object_store` crate) uploads to GCS through the XML API: a plain PUT for
small objects and the XML multipart upload (initiate, parts, complete, abort) for large ones.
fake-gcs-server v1.56 answers those PUTs with "invalid uploadType". This loopback adapter
translates just those calls onto fake-gcs-server's own JSON API (media uploads and compose);
everything else (GET, HEAD, DELETE, XML listing) passes through unchanged, so what is stored,
listed, read and deleted is the real emulator's doing. Parts live as `.mpu/<id>/<n>` objects
until the upload completes (composed into the final name, then deleted) or is aborted.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.harness.net import free_port

COMPOSE_LIMIT = 32


class GcsXmlAdapter:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        adapter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                adapter.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- upstream ---------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            hdrs = {"Host": f"127.0.0.1:{self.upstream_port}", **(headers or {})}
            if body or method in {"PUT", "POST"}:
                hdrs["Content-Length"] = str(len(body))
            conn.request(method, path, body=body or None, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def _media(self, bucket: str, name: str, body: bytes) -> tuple[int, dict[str, object]]:
        path = f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quote(name, safe='')}"
        status, _, data = self._call(
            "POST", path, body, {"Content-Type": "application/octet-stream"}
        )
        return status, (json.loads(data) if data.startswith(b"{") else {})

    def _delete(self, bucket: str, name: str) -> None:
        self._call("DELETE", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")

    # -- requests ---------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        query = parse_qs(split.query, keep_blank_values=True)
        parts = split.path.lstrip("/").split("/", 1)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if len(parts) == 2 and parts[1]:
            bucket, name = parts[0], unquote(parts[1])
            if h.command == "PUT" and not query:
                return self._reply_put(h, *self._media(bucket, name, body))
            if h.command == "POST" and "uploads" in query:
                upload = secrets.token_hex(8)
                xml = (
                    f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key>"
                    f"<UploadId>{upload}</UploadId></InitiateMultipartUploadResult>"
                )
                return self._reply(h, 200, xml.encode(), "application/xml")
            if h.command == "PUT" and "uploadId" in query and "partNumber" in query:
                part = f".mpu/{query['uploadId'][0]}/{int(query['partNumber'][0]):05d}"
                return self._reply_put(h, *self._media(bucket, part, body))
            if h.command == "POST" and "uploadId" in query:
                return self._complete(h, bucket, name, query["uploadId"][0], body)
            if h.command == "DELETE" and "uploadId" in query:
                self._abort(bucket, query["uploadId"][0])
                return self._reply(h, 204, b"")
        status, headers, data = self._call(h.command, h.path, body, {})
        h.send_response(status)
        for key, value in headers.items():
            if key not in {"content-length", "transfer-encoding", "connection"}:
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _parts(self, bucket: str, upload: str) -> list[str]:
        path = f"/storage/v1/b/{bucket}/o?prefix={quote(f'.mpu/{upload}/', safe='')}"
        _, _, data = self._call("GET", path)
        items = json.loads(data or b"{}").get("items") or []
        return sorted(str(i["name"]) for i in items)

    def _complete(
        self, h: BaseHTTPRequestHandler, bucket: str, name: str, upload: str, body: bytes
    ) -> None:
        wanted = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
        sources = [f".mpu/{upload}/{n:05d}" for n in sorted(wanted)]
        if sources != [p for p in self._parts(bucket, upload) if p in sources] or not sources:
            return self._reply(
                h, 400, b"<Error><Code>InvalidPart</Code></Error>", "application/xml"
            )
        # compose takes at most 32 sources: fold them in batches into a staging object
        staging = f".mpu/{upload}/compose"
        current: list[str] = []
        for source in sources:
            current.append(source)
            if len(current) == COMPOSE_LIMIT:
                self._compose(bucket, staging, current)
                current = [staging]
        target = name
        status, result = self._compose(bucket, target, current)
        for obj in [*self._parts(bucket, upload)]:
            self._delete(bucket, obj)
        if status >= 300:
            return self._reply(h, status, b"<Error><Code>InternalError</Code></Error>")
        etag = str(result.get("etag") or result.get("md5Hash") or "x")
        xml = (
            f'<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key><ETag>"{etag}"</ETag>'
            "</CompleteMultipartUploadResult>"
        )
        self._reply(h, 200, xml.encode(), "application/xml")

    def _compose(self, bucket: str, dest: str, sources: list[str]) -> tuple[int, dict[str, object]]:
        payload = json.dumps(
            {
                "sourceObjects": [{"name": s} for s in sources],
                "destination": {"contentType": "application/octet-stream"},
            }
        ).encode()
        path = f"/storage/v1/b/{bucket}/o/{quote(dest, safe='')}/compose"
        status, _, data = self._call("POST", path, payload, {"Content-Type": "application/json"})
        return status, (json.loads(data) if data.startswith(b"{") else {})

    def _abort(self, bucket: str, upload: str) -> None:
        for obj in self._parts(bucket, upload):
            self._delete(bucket, obj)

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str = "") -> None:
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _reply_put(self, h: BaseHTTPRequestHandler, status: int, result: dict[str, object]) -> None:
        if status >= 300:
            return self._reply(h, status, b"<Error><Code>InternalError</Code></Error>")
        h.send_response(200)
        h.send_header("ETag", f'"{result.get("etag") or result.get("md5Hash") or "x"}"')
        h.send_header("x-goog-generation", str(result.get("generation") or "1"))
        h.send_header("Content-Length", "0")
        h.end_headers()
        return None
