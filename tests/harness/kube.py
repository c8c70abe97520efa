"""One facade over the cluster providers: `local` (our control plane), `kind`, `existing`.

Select with LEARNOPS_CLUSTER (default `local`). Outside pytest:
`python -m tests.harness.kube up` prints the kubeconfig path; `... down` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .controlplane import LocalControlPlane, k8s_bindir, stop_by_pidfiles

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

PROVIDERS = ("local", "kind", "existing")
# What the tests poll, as API paths: (group/version prefix, plural) by every name kubectl takes.
# A read through the API client costs milliseconds; a kubectl process ~0.15 CPU-seconds, and
# waits poll several times a second (kubectl was the e2e tier's largest CPU user, measured).
_PLURAL_ONE = {
    "node": ("api/v1", "nodes"),
    "pod": ("api/v1", "pods"),
    "event": ("api/v1", "events"),
    "configmap": ("api/v1", "configmaps"),
    "pvc": ("api/v1", "persistentvolumeclaims"),
    "persistentvolumeclaim": ("api/v1", "persistentvolumeclaims"),
    "job": ("apis/batch/v1", "jobs"),
    "lease": ("apis/coordination.k8s.io/v1", "leases"),
    "cronjob": ("apis/batch/v1", "cronjobs"),
    "deployment": ("apis/apps/v1", "deployments"),
    "databasebackup": ("apis/learnops.io/v1alpha1", "databasebackups"),
    "dbb": ("apis/learnops.io/v1alpha1", "databasebackups"),
    "databaserestore": ("apis/learnops.io/v1alpha1", "databaserestores"),
    "dbr": ("apis/learnops.io/v1alpha1", "databaserestores"),
}
_RESOURCES = {**_PLURAL_ONE, **{f"{k}s": v for k, v in _PLURAL_ONE.items()}}
for _prefix, _plural in _PLURAL_ONE.values():
    _RESOURCES[_plural] = (_prefix, _plural)
CLUSTER_DIR = Path(os.environ.get("LEARNOPS_CLUSTER_DIR", "/tmp/learnops-cluster"))


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl whose message says what kubectl said (pytest shows only the message)."""

    def __str__(self) -> str:
        said = (self.stderr or "").strip()[-1500:]
        return f"{super().__str__()}\nkubectl said: {said}" if said else super().__str__()


class KubeCluster:
    """What tests get: a kubeconfig, kubectl, API clients, and impersonation."""

    def __init__(self, provider: str, kubeconfig: Path, kubectl_path: Path):
        self.provider = provider
        self.kubeconfig = kubeconfig
        self.kubectl_path = kubectl_path
        self._scratch = Path(tempfile.mkdtemp(prefix="learnops-kubecfg-"))
        self._reader: ApiClient | None = None

    def kubectl(
        self,
        *args: str,
        as_user: str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args]
        if as_user:
            argv.append(f"--as={as_user}")
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def read(
        self,
        kind: str,
        name: str | None = None,
        *,
        namespace: str | None = None,
        selector: str | None = None,
    ) -> dict[str, Any] | None:
        """`kubectl get KIND [NAME] -n NS [-l SEL] -o json` in-process, as the admin.

        One object, or a List (of every namespace when none is given) whose items carry
        apiVersion and kind like kubectl's; None when the object cannot be read (where kubectl
        exits non-zero). Kinds outside _RESOURCES go through kubectl."""
        from urllib3.exceptions import HTTPError

        if kind not in _RESOURCES:
            args = ["get", kind, *([name] if name else []), "-o", "json"]
            args += ["-n", namespace] if namespace else ([] if name else ["--all-namespaces"])
            args += ["-l", selector] if selector else []
            proc = self.kubectl(*args, check=name is None)
            return json.loads(proc.stdout) if proc.returncode == 0 else None
        prefix, plural = _RESOURCES[kind]
        path = f"/{prefix}/" + (f"namespaces/{namespace}/" if namespace else "") + plural
        if self._reader is None:
            self._reader = self.api()
        method, url, headers, _, _ = self._reader.param_serialize(
            "GET",
            path + (f"/{name}" if name else ""),
            query_params=[("labelSelector", selector)] if selector else [],
            auth_settings=["BearerToken"],
        )
        try:
            got = self._reader.call_api(method, url, header_params=headers, _request_timeout=30)
            body = got.read()
        except HTTPError:
            if name is not None:  # like kubectl's non-zero exit, which callers poll through
                return None
            raise
        if got.status != 200:
            if name is not None:
                return None
            raise RuntimeError(f"GET {path}: HTTP {got.status}: {body[:500]!r}")
        data: dict[str, Any] = json.loads(body)
        if name is not None:
            data.get("metadata", {}).pop("managedFields", None)  # kubectl leaves them out too
            return data
        version = prefix.split("/", 1)[1]
        item_kind = str(data.get("kind", "")).removesuffix("List")
        for item in data.get("items", []):
            item.get("metadata", {}).pop("managedFields", None)
            item.setdefault("apiVersion", version)
            item.setdefault("kind", item_kind)
        return data

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig that acts as `user`.

        For an existing service account (system:serviceaccount:NS:NAME) it holds a real bound
        token from the TokenRequest API, so any client (kopf included) authenticates as that
        account. Other users are impersonated with `as:` (honoured by kubectl and Go clients).
        """
        cfg: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        token = self._serviceaccount_token(user)
        for entry in cfg["users"]:
            if token:
                entry["user"] = {"token": token}
            else:
                entry["user"]["as"] = user
        safe = user.replace(":", "_")
        path = self._scratch / f"{safe}.kubeconfig"
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def _serviceaccount_token(self, user: str) -> str | None:
        parts = user.split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            return None
        made = self.kubectl(
            "create", "token", parts[3], "-n", parts[2], "--duration=24h", check=False
        )
        return made.stdout.strip() if made.returncode == 0 else None

    def api(self, impersonate: str | None = None) -> ApiClient:
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(config_file=str(self.kubeconfig))
        if impersonate:
            # The Python client ignores a kubeconfig's `as:`; send the headers ourselves.
            client.set_default_header("Impersonate-User", impersonate)
        return client

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        shutil.rmtree(self._scratch, ignore_errors=True)


def start_local(workdir: Path) -> tuple[KubeCluster, LocalControlPlane]:
    plane = LocalControlPlane(workdir, k8s_bindir()).start()
    return KubeCluster("local", plane.kubeconfig, plane.kubectl_path), plane


def kubectl_binary() -> Path:
    found = shutil.which("kubectl")
    return Path(found) if found else k8s_bindir() / "kubectl"


def existing_cluster() -> KubeCluster:
    kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
    return KubeCluster("existing", kubeconfig, kubectl_binary())


def main(argv: list[str]) -> int:
    """`up` starts a local control plane in the background and prints its kubeconfig; `down`."""
    command = argv[1] if len(argv) > 1 else "up"
    if command == "down":
        stop_by_pidfiles(CLUSTER_DIR)
        shutil.rmtree(CLUSTER_DIR, ignore_errors=True)
        print(f"stopped the control plane in {CLUSTER_DIR}")
        return 0
    if command != "up":
        print("usage: python -m tests.harness.kube up|down", file=sys.stderr)
        return 2
    if (CLUSTER_DIR / "kube-apiserver.pid").exists():
        stop_by_pidfiles(CLUSTER_DIR)
    shutil.rmtree(CLUSTER_DIR, ignore_errors=True)
    plane = LocalControlPlane(CLUSTER_DIR, k8s_bindir()).start()
    # The processes live on in their own sessions; `down` stops them by pid file.
    print(f"control plane up in {plane.start_seconds:.1f}s; logs in {CLUSTER_DIR}", file=sys.stderr)
    print(plane.kubeconfig.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
