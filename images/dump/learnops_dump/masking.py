"""Remove secrets from any text before it leaves the process.

pg_dump, psql and libpq print connection strings and error text we do not
control, so every such text passes through `mask` before it reaches a log line,
an exception, a manifest or the termination message. A secret is removed in
every spelling a tool or a serializer may give it (percent-encoding, pgpass and
JSON escapes), and always before any text is cut: a cut first could keep half
of a secret that the masker no longer recognises.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
_URI_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_PASSWORD_KV = re.compile(
    r"""(?i)\b(password|passwd|pwd)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"[^"]*"|\S+)"""
)

# A tool may print a secret in a spelling nobody can list (a shell's `echo` eats backslashes,
# a formatter wraps lines): any run of FRAGMENT characters of a secret is masked as well.
FRAGMENT = 8

_lock = threading.Lock()
_known: set[str] = set()
_grams: set[str] = set()
_fragments: re.Pattern[str] | None = None
_longest = 0


def spellings(secret: str) -> set[str]:
    """The secret as written raw, percent-encoded, pgpass-escaped and JSON/repr-escaped."""
    pgpass = secret.replace("\\", "\\\\").replace(":", "\\:")
    forms = {secret, pgpass}
    for form in (secret, pgpass):
        forms |= {quote(form, safe=""), quote_plus(form, safe=""), quote(form)}
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
        forms.add(repr(form)[1:-1])
    # lower-case hex digits are the same percent-encoding
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in set(forms)}
    return {f for f in forms if f}


def register_secret(secret: str) -> None:
    """Remember a secret value so that `mask` removes it wherever it shows up."""
    global _longest
    if not secret:
        return
    global _fragments
    forms = spellings(secret)
    with _lock:
        _known.update(forms)
        _longest = max(_longest, *(len(f.encode()) for f in forms))
        for form in (secret, secret.replace("\\", "\\\\").replace(":", "\\:")):
            _grams.update(form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1))
        _fragments = None  # compiled again on the next mask (one pgpass may hold many)


def forget_secrets() -> None:
    """Drop every registered secret (tests use this to stay independent)."""
    global _longest, _fragments
    with _lock:
        _known.clear()
        _grams.clear()
        _fragments = None
        _longest = 0


def mask(text: str) -> str:
    """Return `text` without known secrets, URI userinfo or `password=` values."""
    global _fragments
    with _lock:
        known = sorted(_known, key=len, reverse=True)
        if _fragments is None and _grams:
            alternatives = "|".join(map(re.escape, sorted(_grams)))
            _fragments = re.compile(f"(?=({alternatives}))")
        fragments = _fragments
    for secret in known:
        text = text.replace(secret, MASK)
    if fragments is not None:
        text = _mask_fragments(text, fragments)
    text = _URI_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _PASSWORD_KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def _mask_fragments(text: str, fragments: re.Pattern[str]) -> str:
    covered = bytearray(len(text))
    for match in fragments.finditer(text):
        start = match.start()
        covered[start : start + FRAGMENT] = b"\1" * len(covered[start : start + FRAGMENT])
    if not any(covered):
        return text
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _mask_bytes(data: bytes) -> bytes:
    # surrogateescape keeps undecodable bytes as they are, so masking never shifts them
    return mask(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


class MaskedTail:
    """The last `limit` bytes of a stream, masked before anything is dropped.

    Whenever the buffer outgrows twice its bound it is masked whole and only then
    trimmed; the end is never trimmed, so a secret split across two chunks is still
    whole when the next mask runs.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, block: bytes) -> None:
        self._buf += block
        keep = self.limit + 8 * _longest + 64
        if len(self._buf) > 2 * keep:
            masked = _mask_bytes(bytes(self._buf))
            self._buf = bytearray(masked[-keep:])

    def text(self) -> str:
        """Masked, then cut to `limit` bytes, then decoded (no secret survives the cut)."""
        masked = _mask_bytes(bytes(self._buf))[-self.limit :]
        return mask(masked.decode("utf-8", "replace")).strip()


def masked_tail(blocks: Iterable[bytes], limit: int) -> str:
    tail = MaskedTail(limit)
    for block in blocks:
        tail.feed(block)
    return tail.text()


def mask_value(value: object) -> object:
    """Mask every string inside a JSON-like value (before it is serialized)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask_value(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value
