"""What PostgreSQL's jsonb and text accept, checked in Python before anything is written.

jsonb refuses NaN and Infinity, NUL characters and lone surrogates; text refuses NUL. A
handler's result or error is checked here, in the handler's thread, so a value the database
would refuse fails only its own job, with a reason, instead of a whole acknowledgement batch.
"""

from __future__ import annotations

import json
import math

from .models import MAX_JSON_DEPTH, JsonValue


class Unstorable(ValueError):
    """The value cannot be stored as jsonb."""


def dumps(value: JsonValue, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> str:
    """`value` as JSON text that jsonb accepts, or Unstorable naming what is wrong."""
    _check(value, max_depth)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. an int too long to print
        raise Unstorable(f"not JSON ({type(exc).__name__})") from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise Unstorable(f"{size} bytes of JSON, more than the limit of {max_bytes}")
    return text


def _check(value: JsonValue, max_depth: int) -> None:
    # An explicit stack: a deep value must not become a RecursionError here.
    stack: list[tuple[JsonValue, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif item is None or isinstance(item, bool | int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Unstorable(f"{item!r} is not a JSON number")
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                raise Unstorable(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise Unstorable(f"object key of type {type(key).__name__}")
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            raise Unstorable(f"a {type(item).__name__} is not JSON")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise Unstorable("a string contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable("a string contains a lone surrogate") from None


def clean_text(text: str, limit: int) -> str:
    """Text a text column accepts: NUL shown as U+2400, lone surrogates escaped, cut at `limit`."""
    text = text.replace("\x00", "\u2400")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def loads(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> JsonValue:
    """Decode a payload; Unstorable if Python cannot (too deep, numbers too long, ...)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Unstorable(f"cannot be decoded ({type(exc).__name__})") from None
    try:
        _check(value, max_depth)
    except Unstorable as exc:
        raise Unstorable(f"cannot be decoded ({exc})") from None
    return value
