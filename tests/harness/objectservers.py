"""Real object-storage servers on loopback: SeaweedFS (S3), fake-gcs-server (GCS), Azurite.

Built or installed by tests/harness/install-object-servers.sh (cached by version), started
once per test session on free ports with their data in a temp dir, stopped on exit. Each
server gets a credentials directory laid out like the Secret volume the dump pod mounts,
holding a unique canary secret, so the tests can prove it never leaks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import obstore
from obstore.store import AzureStore, GCSStore, S3Store

from tests.harness.gcsxml import GcsXmlAdapter
from tests.harness.net import free_port, wait_port

HARNESS = Path(__file__).resolve().parent
INSTALL = HARNESS / "install-object-servers.sh"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _http(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """One request to a loopback URL this module builds itself (http://127.0.0.1 only)."""
    assert url.startswith("http://127.0.0.1:")
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        body: bytes = resp.read()
    return body


class ServerUnavailable(RuntimeError):
    """An object-storage server could not be installed or started here."""


def install(*kinds: str) -> Path:
    """Run the install script for these servers (idempotent); returns the bin dir."""
    done = subprocess.run([str(INSTALL), *kinds], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerUnavailable(f"install-object-servers.sh failed: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class ObjectServer:
    """One running server; `runner_env` is what a dump pod's environment would say."""

    kind = ""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.workdir = Path(tempfile.mkdtemp(prefix=f"learnops-{self.kind}-"))
        self.credentials = self.workdir / "credentials"
        self.credentials.mkdir()
        self.port = free_port()
        self.secret = f"Canary{secrets.token_hex(12)}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(
        self,
        argv: list[str],
        ready_port: int,
        timeout: float = 90,
        env: dict[str, str] | None = None,
    ) -> None:
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            wait_port(ready_port, timeout)
        except TimeoutError:
            self.stop()
            raise ServerUnavailable(f"{self.kind} did not start: {self.log_tail()}") from None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- per server ---------------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        raise NotImplementedError

    def runner_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        raise NotImplementedError

    def store(self, bucket: str) -> Any:
        """An obstore client for the test's own inspection of the bucket."""
        raise NotImplementedError

    def keys(self, bucket: str) -> list[str]:
        return sorted(
            str(meta["path"]) for batch in obstore.list(self.store(bucket)) for meta in batch
        )

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(obstore.get(self.store(bucket), key).bytes())

    def pending_uploads(self, bucket: str) -> int:
        """Multipart uploads begun but neither completed nor aborted (-1: cannot tell)."""
        return -1


class SeaweedS3(ObjectServer):
    """SeaweedFS in one process: master, volume, filer and the S3 gateway."""

    kind = "s3"

    def start(self) -> SeaweedS3:
        ports = {n: free_port() for n in ("master", "volume", "filer")}
        grpc = {n: free_port() for n in ("master", "volume", "filer", "s3")}
        config = {
            "identities": [
                {
                    "name": "learnops",
                    "credentials": [{"accessKey": "learnops-test", "secretKey": self.secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(config))
        (self.credentials / "accessKeyId").write_text("learnops-test")
        (self.credentials / "secretAccessKey").write_text(self.secret)
        data = self.workdir / "data"
        data.mkdir()
        self.filer_port = ports["filer"]
        argv = [
            str(self.bindir / "weed"),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.max=0",  # as many as the disk holds: every bucket grows its own volumes
            "-master.volumeSizeLimitMB=32",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.config={self.workdir / 's3.json'}",
        ]
        # SSE-S3 (x-amz-server-side-encryption: AES256) needs a server-side key.
        self._spawn(argv, self.port, env={"WEED_S3_SSE_KEY": secrets.token_hex(16)})
        return self

    def create_bucket(self, name: str) -> None:
        # The filer's HTTP API: a directory under /buckets is a bucket. Right after start the
        # filer may still wait for its master's leader election.
        deadline = time.monotonic() + 60
        while True:
            try:
                _http(f"http://127.0.0.1:{self.filer_port}/buckets/{name}/", "POST")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def runner_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        return {
            "BACKUP_STORAGE_KIND": "s3",
            "BACKUP_BUCKET": bucket,
            "BACKUP_OBJECT_ENDPOINT": endpoint or self.endpoint,
            "BACKUP_S3_PATH_STYLE": "true",
            "BACKUP_S3_REGION": "us-east-1",
            "BACKUP_CREDENTIALS_DIR": str(self.credentials),
        }

    def store(self, bucket: str) -> S3Store:
        return S3Store(
            bucket,
            config={
                "endpoint": self.endpoint,
                "access_key_id": "learnops-test",
                "secret_access_key": self.secret,
                "region": "us-east-1",
                "virtual_hosted_style_request": False,
            },
            client_options={"allow_http": True},
        )

    def pending_uploads(self, bucket: str) -> int:
        """SeaweedFS keeps unfinished multipart uploads as folders under <bucket>/.uploads."""
        url = f"http://127.0.0.1:{self.filer_port}/buckets/{bucket}/.uploads/?limit=1000"
        try:
            listing = json.loads(_http(url, headers={"Accept": "application/json"}) or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise
        return len(listing.get("Entries") or [])


class FakeGcs(ObjectServer):
    """fake-gcs-server, in memory, behind the XML-API adapter (tests/harness/gcsxml.py);
    the key file carries the base URL and no OAuth."""

    kind = "gcs"
    adapter: GcsXmlAdapter | None = None

    @property
    def endpoint(self) -> str:
        return self.adapter.endpoint if self.adapter else f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.adapter is not None:
            self.adapter.stop()
        super().stop()

    def start(self) -> FakeGcs:
        argv = [
            str(self.bindir / "fake-gcs-server"),
            "-scheme=http",
            "-host=127.0.0.1",
            f"-port={self.port}",
            "-backend=memory",
            f"-public-host=127.0.0.1:{self.port}",
            f"-external-url={self.endpoint}",
            "-log-level=error",
        ]
        self._spawn(argv, self.port)
        self.adapter = GcsXmlAdapter(self.port)
        key = {
            "type": "service_account",
            "client_email": "learnops@test.invalid",
            "private_key": f"-----BEGIN PRIVATE KEY-----\n{self.secret}\n-----END PRIVATE KEY-----",
            "private_key_id": "test",
            "disable_oauth": True,
            "gcs_base_url": self.endpoint,
        }
        (self.credentials / "serviceAccount.json").write_text(json.dumps(key))
        return self

    def create_bucket(self, name: str) -> None:
        body = json.dumps({"name": name}).encode()
        url = f"http://127.0.0.1:{self.port}/storage/v1/b"
        _http(url, "POST", body, {"Content-Type": "application/json"})

    def runner_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        return {
            "BACKUP_STORAGE_KIND": "gcs",
            "BACKUP_BUCKET": bucket,
            "BACKUP_OBJECT_ENDPOINT": endpoint or self.endpoint,
            "BACKUP_CREDENTIALS_DIR": str(self.credentials),
        }

    def store(self, bucket: str) -> GCSStore:
        return GCSStore(
            bucket,
            config={
                "service_account": str(self.credentials / "serviceAccount.json"),
                "base_url": self.endpoint,
            },
            client_options={"allow_http": True},
        )


class Azurite(ObjectServer):
    """Azurite's blob service with its development account, data in the temp dir."""

    kind = "azureBlob"

    def start(self) -> Azurite:
        main = self.bindir / "azurite-blob"
        argv = [
            shutil.which("node") or "node",
            str(main.resolve()),
            "--blobHost=127.0.0.1",
            f"--blobPort={self.port}",
            f"--location={self.workdir / 'data'}",
            "--skipApiVersionCheck",
            "--loose",
        ]
        self._spawn(argv, self.port)
        (self.credentials / "accountKey").write_text(AZURITE_KEY)
        self.secret = AZURITE_KEY
        return self

    def create_bucket(self, name: str) -> None:
        path = f"/{AZURITE_ACCOUNT}/{name}"
        date = formatdate(usegmt=True)
        version = "2021-10-04"
        # SharedKey: VERB, 11 standard headers (only Content-Type set), x-ms-*, resource.
        canonical = "\n".join(
            [
                "PUT",
                *["", "", "", "", "application/octet-stream"],
                *["", "", "", "", "", ""],
                f"x-ms-date:{date}\nx-ms-version:{version}",
                f"/{AZURITE_ACCOUNT}{path}\nrestype:container",
            ]
        )
        mac = hmac.new(base64.b64decode(AZURITE_KEY), canonical.encode(), hashlib.sha256)
        signature = base64.b64encode(mac.digest()).decode()
        headers = {
            "Content-Type": "application/octet-stream",
            "x-ms-date": date,
            "x-ms-version": version,
            "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{signature}",
        }
        _http(f"{self.endpoint}{path}?restype=container", "PUT", b"", headers)

    def runner_env(self, bucket: str, endpoint: str | None = None) -> dict[str, str]:
        return {
            "BACKUP_STORAGE_KIND": "azureBlob",
            "BACKUP_BUCKET": bucket,
            "BACKUP_AZURE_ACCOUNT": AZURITE_ACCOUNT,
            "BACKUP_OBJECT_ENDPOINT": endpoint or self.endpoint,
            "BACKUP_CREDENTIALS_DIR": str(self.credentials),
        }

    def store(self, bucket: str) -> AzureStore:
        return AzureStore(
            bucket,
            config={
                "account_name": AZURITE_ACCOUNT,
                "account_key": AZURITE_KEY,
                "endpoint": f"{self.endpoint}/{AZURITE_ACCOUNT}",
            },
            client_options={"allow_http": True},
        )


SERVERS: dict[str, type[SeaweedS3] | type[FakeGcs] | type[Azurite]] = {
    "s3": SeaweedS3,
    "gcs": FakeGcs,
    "azureBlob": Azurite,
}


@contextlib.contextmanager
def running(kind: str, bindir: Path) -> Iterator[ObjectServer]:
    server = SERVERS[kind](bindir).start()
    try:
        yield server
    finally:
        server.stop()
