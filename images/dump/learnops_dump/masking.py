"""Remove secrets from any text before it leaves the process.

pg_dump, psql and libpq print connection strings and error text we do not
control, so every such text passes through `mask` before it reaches a log line,
an exception, a manifest or the termination message.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

MASK = "***"
_URI_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_PASSWORD_KV = re.compile(
    r"""(?i)\b(password|passwd|pwd)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"[^"]*"|\S+)"""
)

_lock = threading.Lock()
_known: set[str] = set()


def register_secret(secret: str) -> None:
    """Remember a secret value so that `mask` removes it wherever it shows up."""
    if not secret:
        return
    with _lock:
        _known.add(secret)
        # libpq and URLs may print the percent-encoded form of the same value.
        _known.add(quote(secret, safe=""))


def forget_secrets() -> None:
    """Drop every registered secret (tests use this to stay independent)."""
    with _lock:
        _known.clear()


def mask(text: str) -> str:
    """Return `text` without known secrets, URI userinfo or `password=` values."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _URI_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _PASSWORD_KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
