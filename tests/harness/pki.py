"""A throwaway PKI for the local control plane, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

DAYS = "3650"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """CA, apiserver serving cert, client certs and the service-account key pair."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        DAYS,
        "-subj",
        "/CN=learnops-test-ca",
        cwd=d,
    )
    ext = d / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _sign(d, "apiserver", "/CN=kube-apiserver", ext)
    client_ext = d / "client.ext"
    client_ext.write_text("extendedKeyUsage=clientAuth\n")
    # system:masters: the admin and the controller-manager (one identity keeps the ground simple;
    # RBAC is still enforced on everything tests run as a service account).
    _sign(d, "admin", "/O=system:masters/CN=kubernetes-admin", client_ext)
    _sign(
        d, "controller-manager", "/O=system:masters/CN=system:kube-controller-manager", client_ext
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    for key in d.glob("*.key"):
        key.chmod(0o600)


def _sign(d: Path, name: str, subject: str, ext: Path) -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        DAYS,
        "-extfile",
        str(ext),
        cwd=d,
    )


def kubeconfig(d: Path, server: str, cert: str, *, impersonate: str | None = None) -> str:
    """A kubeconfig using client cert `cert` (e.g. "admin"), optionally impersonating a user."""
    as_line = f"\n    as: {impersonate}" if impersonate else ""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: learnops-local
  cluster:
    server: {server}
    certificate-authority: {d / "ca.crt"}
users:
- name: {cert}
  user:
    client-certificate: {d / f"{cert}.crt"}
    client-key: {d / f"{cert}.key"}{as_line}
contexts:
- name: learnops-local
  context:
    cluster: learnops-local
    user: {cert}
current-context: learnops-local
"""
