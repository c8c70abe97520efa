"""An S3 server as a pod in the kind cluster: SeaweedFS, the way a user runs an S3-compatible
store next to learnops (or as the stand-in for a cloud bucket).

The image is tests/harness/seaweedfs-image (the `weed` binary install-object-servers.sh built
from the Go module proxy, on the locally made base image). A Deployment in its own restricted
namespace runs `weed server` with the S3 gateway; its identities file, holding a unique canary
secret key, is a Secret mounted as a file. Pods reach it through the `s3` Service; this host
reaches it through a NodePort that kind publishes on 127.0.0.1 only, to look into the bucket.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import obstore
from obstore.store import S3Store

from .containers import Engine
from .kube import KubeCluster
from .objectservers import install

NAMESPACE = "learnops-s3"
IMAGE = "learnops/test-seaweedfs:e2e"
IMAGE_DIR = Path(__file__).resolve().parent / "seaweedfs-image"
SERVICE_ENDPOINT = f"http://s3.{NAMESPACE}.svc.cluster.local:8333"
NODEPORT = 30333
ACCESS_KEY = "learnops-e2e"
RUNTIME_UID = 65532
FILER_PORT = 8888

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: seaweedfs, namespace: {ns}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app.kubernetes.io/name: seaweedfs}}}}
  template:
    metadata: {{labels: {{app.kubernetes.io/name: seaweedfs}}}}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 5
      securityContext:
        runAsNonRoot: true
        runAsUser: {uid}
        runAsGroup: {uid}
        fsGroup: {uid}
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: seaweedfs
        image: {image}
        imagePullPolicy: Never
        # master, volume and filer talk over the pod's loopback; only the S3 gateway is served
        args: [server, -ip=127.0.0.1, -ip.bind=0.0.0.0, -dir=/data, -volume.max=0,
               -master.volumeSizeLimitMB=32, -filer, -s3, -s3.port=8333,
               -s3.config=/etc/seaweedfs/s3.json]
        env: [{{name: HOME, value: /tmp}}]
        ports: [{{containerPort: 8333, name: s3}}]
        readinessProbe:
          tcpSocket: {{port: 8333}}
          periodSeconds: 1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        volumeMounts:
        - {{name: data, mountPath: /data}}
        - {{name: config, mountPath: /etc/seaweedfs, readOnly: true}}
        - {{name: tmp, mountPath: /tmp}}
      volumes:
      - {{name: config, secret: {{secretName: seaweedfs-s3-config, defaultMode: 0440}}}}
      - {{name: data, emptyDir: {{}}}}
      - {{name: tmp, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: s3, namespace: {ns}}}
spec:
  selector: {{app.kubernetes.io/name: seaweedfs}}
  ports: [{{port: 8333, targetPort: s3}}]
---
apiVersion: v1
kind: Service
metadata: {{name: s3-from-host, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app.kubernetes.io/name: seaweedfs}}
  ports: [{{port: 8333, targetPort: s3, nodePort: {nodeport}}}]
"""


def build_image(engine: Engine) -> str:
    """Build IMAGE on a staged context: the Dockerfile plus the cached `weed` binary."""
    weed = (install("s3") / "weed").resolve()
    with tempfile.TemporaryDirectory(prefix="learnops-seaweedfs-context-") as tmp:
        context = Path(tmp)
        shutil.copyfile(IMAGE_DIR / "Dockerfile", context / "Dockerfile")
        try:
            os.link(weed, context / "weed")
        except OSError:
            shutil.copy2(weed, context / "weed")
        return engine.build(IMAGE, context / "Dockerfile", context)


class PodS3:
    """The cluster's S3 server, its credentials (a canary secret key) and a view from the host."""

    def __init__(self, kube: KubeCluster, host_port: int) -> None:
        self.kube = kube
        self.host_port = host_port
        self.access_key = ACCESS_KEY
        self.secret = f"Canary{secrets.token_hex(12)}"
        self.endpoint = SERVICE_ENDPOINT

    def start(self, timeout: float = 180) -> PodS3:
        """Apply the Deployment and wait until the S3 API answers; the image must be loaded."""
        manifest = MANIFEST.format(ns=NAMESPACE, uid=RUNTIME_UID, image=IMAGE, nodeport=NODEPORT)
        self.kube.kubectl("apply", "-f", "-", input=manifest.split("---")[0])
        identities = {
            "identities": [
                {
                    "name": "learnops",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        secret = self.kube.kubectl(
            "create", "secret", "generic", "seaweedfs-s3-config", "-n", NAMESPACE,
            "--from-file=s3.json=/dev/stdin", "--dry-run=client", "-o", "yaml",
            input=json.dumps(identities),
        ).stdout  # fmt: skip
        self.kube.kubectl("apply", "-f", "-", input=secret)
        self.kube.kubectl("apply", "-f", "-", input=manifest)
        self.kube.kubectl(
            "rollout", "status", "-n", NAMESPACE, "deployment/seaweedfs", f"--timeout={timeout}s"
        )
        return self

    def create_bucket(self, name: str, timeout: float = 60) -> None:
        """A directory under the filer's /buckets is a bucket. The filer is not published, so
        the request goes from inside the pod (bash's /dev/tcp: the image has no HTTP client);
        right after start the filer may still wait for its master's leader election."""
        request = (
            f"exec 3<>/dev/tcp/127.0.0.1/{FILER_PORT} && "
            f"printf 'POST /buckets/{name}/ HTTP/1.0\\r\\nContent-Length: 0\\r\\n\\r\\n' >&3 && "
            "head -c 12 <&3"
        )
        deadline = time.monotonic() + timeout
        while True:
            done = self.kube.kubectl(
                "exec", "-n", NAMESPACE, "deployment/seaweedfs", "--", "bash", "-c", request,
                check=False,
            )  # fmt: skip
            if done.returncode == 0 and " 20" in done.stdout:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bucket {name} not created: {done.stdout} {done.stderr}")
            time.sleep(1)

    def credentials_secret(self, namespace: str, name: str) -> None:
        """The Secret a DatabaseBackup names in credentialsSecretRef (applied through stdin)."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"accessKeyId": self.access_key, "secretAccessKey": self.secret},
        }
        self.kube.kubectl("create", "-f", "-", input=json.dumps(secret))

    def store(self, bucket: str) -> S3Store:
        """An obstore client for the test's own look into the bucket, through the NodePort."""
        return S3Store(
            bucket,
            config={
                "endpoint": f"http://127.0.0.1:{self.host_port}",
                "access_key_id": self.access_key,
                "secret_access_key": self.secret,
                "region": "us-east-1",
                "virtual_hosted_style_request": False,
            },
            client_options={"allow_http": True},
        )

    def keys(self, bucket: str) -> list[str]:
        return sorted(
            str(meta["path"]) for batch in obstore.list(self.store(bucket)) for meta in batch
        )

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(obstore.get(self.store(bucket), key).bytes())
