"""Named SQL statements loaded once from queries.sql (`-- name: x --` headers)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_]+) --$", re.MULTILINE)


@cache
def _all() -> dict[str, str]:
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    return {name: body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def query(name: str) -> str:
    """The statement called `name` in queries.sql."""
    return _all()[name]
