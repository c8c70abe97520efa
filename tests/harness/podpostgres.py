"""PostgreSQL as a pod in the kind cluster, the way users run the database next to learnops.

A StatefulSet in its own restricted namespace runs tests/harness/postgres-image (Debian's
PostgreSQL, scram auth) with its data on a PVC of the cluster's default StorageClass. Pods reach
it through the `postgres` Service; this host reaches it through a NodePort that kind publishes on
127.0.0.1 only. `in_cluster()` turns a host-side connection into the one a pod must use.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

import psycopg

from .kube import KubeCluster
from .postgres import Conn, PgServer, pg_bindir

NAMESPACE = "learnops-db"
IMAGE = "learnops/test-postgres:15"
IMAGE_DIR = Path(__file__).resolve().parent / "postgres-image"
SERVICE_HOST = f"postgres.{NAMESPACE}.svc.cluster.local"
NODEPORT = 30432
# A second server (restore target, drill scratch server): its own initdb, so its own system
# identifier, in its own namespace.
SCRATCH_NAMESPACE = "learnops-scratch-db"
SCRATCH_NODEPORT = 30433
RUNTIME_UID = 999

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: postgres, namespace: {ns}}}
spec:
  serviceName: postgres
  replicas: 1
  selector: {{matchLabels: {{app.kubernetes.io/name: postgres}}}}
  template:
    metadata: {{labels: {{app.kubernetes.io/name: postgres}}}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 5
      securityContext:
        runAsNonRoot: true
        runAsUser: {uid}
        runAsGroup: {uid}
        fsGroup: {uid}
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: postgres
        image: {image}
        imagePullPolicy: Never
        env: [{{name: POSTGRES_PASSWORD_FILE, value: /etc/postgres-secret/password}}]
        ports: [{{containerPort: 5432, name: postgres}}]
        readinessProbe:
          tcpSocket: {{port: 5432}}
          periodSeconds: 1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        volumeMounts:
        - {{name: data, mountPath: /var/lib/postgresql/data}}
        - {{name: secret, mountPath: /etc/postgres-secret, readOnly: true}}
        - {{name: run, mountPath: /var/run/postgresql}}
        - {{name: tmp, mountPath: /tmp}}
      volumes:
      - {{name: secret, secret: {{secretName: postgres-superuser, defaultMode: 0440}}}}
      - {{name: run, emptyDir: {{}}}}
      - {{name: tmp, emptyDir: {{}}}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 2Gi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: postgres, namespace: {ns}}}
spec:
  selector: {{app.kubernetes.io/name: postgres}}
  ports: [{{port: 5432, targetPort: postgres}}]
---
apiVersion: v1
kind: Service
metadata: {{name: postgres-from-host, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app.kubernetes.io/name: postgres}}
  ports: [{{port: 5432, targetPort: postgres, nodePort: {nodeport}}}]
"""


class PodPostgres(PgServer):
    """The cluster's PostgreSQL, administered from this host."""

    def __init__(
        self,
        kube: KubeCluster,
        host_port: int,
        namespace: str = NAMESPACE,
        nodeport: int = NODEPORT,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.nodeport = nodeport
        self.service_host = f"postgres.{namespace}.svc.cluster.local"
        self.host = "127.0.0.1"
        self.port = host_port
        self.superuser_password = secrets.token_urlsafe(18)
        found = pg_bindir()
        self.bindir = found or Path("/usr/bin")
        self.major = 15

    def start(self, timeout: float = 240) -> PodPostgres:
        """Apply the StatefulSet and wait until a query answers; the image must be loaded."""
        manifest = MANIFEST.format(
            ns=self.namespace, uid=RUNTIME_UID, image=IMAGE, nodeport=self.nodeport
        )
        self.kube.kubectl("apply", "-f", "-", input=manifest.split("---")[0])
        secret = self.kube.kubectl(
            "create", "secret", "generic", "postgres-superuser", "-n", self.namespace,
            "--from-file=password=/dev/stdin", "--dry-run=client", "-o", "yaml",
            input=self.superuser_password,
        ).stdout  # fmt: skip
        self.kube.kubectl("apply", "-f", "-", input=secret)
        self.kube.kubectl("apply", "-f", "-", input=manifest)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect() as c:
                    c.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pods = self.kube.kubectl("get", "pods,pvc", "-n", self.namespace, check=False)
                    raise TimeoutError(f"PostgreSQL pod not answering:\n{pods.stdout}") from None
                time.sleep(1)
        self.create_template()
        return self

    def in_cluster(self, conn: Conn) -> Conn:
        """The same role and database, as a pod reaches them (Service DNS name, port 5432)."""
        return replace(conn, host=self.service_host, port=5432)
