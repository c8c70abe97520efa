"""Offline validation of rendered manifests against the pinned Kubernetes version's schemas."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

GOMOD = Path(__file__).with_name("gomod") / "go.mod"


def pinned_release() -> str:
    """The Kubernetes release the test ground builds, e.g. "1.36.3": the one pin, in go.mod
    (build-k8s.sh reads the same line)."""
    for line in GOMOD.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["k8s.io/kubernetes"] and parts[1].startswith("v"):
            return parts[1][1:]
    raise LookupError(f"no k8s.io/kubernetes requirement in {GOMOD}")


def pinned_version() -> str:
    """The pinned release's minor, e.g. "1.36.0" (schemas exist per minor)."""
    major, minor, _ = pinned_release().split(".")
    return f"{major}.{minor}.0"


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validation_errors(docs: Iterable[dict[str, Any]], *, strict: bool = True) -> list[str]:
    """One message per invalid built-in object; objects of unknown kinds are reported too."""
    version = pinned_version()
    errors = []
    for doc in docs:
        label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=strict)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{label}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{label}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
    return errors
