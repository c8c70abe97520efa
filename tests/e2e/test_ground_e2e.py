"""Smoke test: a Job's pod really runs an image built here under the kind node's kubelet, with
a Secret volume laid out by the kubelet (fsGroup, group-read), and its result reaches the API."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.harness.kube import KubeCluster

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        fsGroup: 2000
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: main
        image: learnops-smoke:test
        imagePullPolicy: Never
        args: ["id -u > /dev/termination-log; cat /secret/token >> /dev/termination-log;
                echo >> /dev/termination-log;
                stat -Lc '%u:%g:%a' /secret/token >> /dev/termination-log;
                touch /rootfs-probe 2>/dev/null && echo writable-root >> /dev/termination-log;
                echo done"]
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        resources: {limits: {memory: 64Mi}}
        volumeMounts: [{name: s, mountPath: /secret, readOnly: true}]
      volumes: [{name: s, secret: {secretName: tok, defaultMode: 0400}}]
"""


def test_a_job_pod_runs_non_root_and_reports_its_termination_message(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("create", "secret", "generic", "tok", "-n", namespace,
                         "--from-literal=token=abc")  # fmt: skip
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=JOB)
    deadline = time.monotonic() + 90
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = kube_cluster.read("job", "hello", namespace=namespace) or {}
        if job.get("status", {}).get("succeeded") or job.get("status", {}).get("failed"):
            break
        time.sleep(0.5)
    assert job["status"].get("succeeded") == 1, job.get("status")
    pods = json.loads(kube_cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    terminated = pods["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    # uid, the Secret's content, its owner root:fsGroup with mode 0400 + group read; no write
    # to the read-only root; and what the container printed is on `kubectl logs`.
    assert terminated["message"].split() == ["65532", "abc", "0:2000:440"]
    pod = pods["items"][0]["metadata"]["name"]
    logs = kube_cluster.kubectl("logs", pod, "-n", namespace).stdout
    assert logs.split() == ["done"]
