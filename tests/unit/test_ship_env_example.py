"""`.env.example` lists every variable the three programs' code names, and no real secret
(tests/unit/test_ship_settings.py holds it to each program's settings declaration)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.ship import ROOT

ENV_EXAMPLE = ROOT / ".env.example"
CODE_DIRS = [
    ROOT / "images" / "dump" / "learnops_dump",
    ROOT / "images" / "learning-worker" / "learnops_worker",
    ROOT / "operator" / "learnops_operator",
]
# String literals that are environment variables of ours or of libpq (constants such as "INFO"
# or "POST" are not).
ENV_NAME = re.compile(
    r"""["']((?:BACKUP|WORKER|LEARNOPS|OPENAI|FEEDBACK|POD|SESSION|DATABASE|PG)[A-Z0-9_]*|TMPDIR)["']"""
)


def documented() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(?:# )?([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match[1])
    return names


def names_in_code() -> Iterator[str]:
    for folder in CODE_DIRS:
        for path in folder.rglob("*.py"):
            yield from ENV_NAME.findall(path.read_text())


def test_every_environment_name_in_the_code_is_in_env_example() -> None:
    found = set(names_in_code())
    assert {"WORKER_CONCURRENCY", "BACKUP_STORAGE_ROOT", "LEARNOPS_DUMP_IMAGE"} <= found
    secret_like = {n for n in found if n.endswith(("DATABASE_URL", "_API_KEY"))}
    wanted = found | {f"{n}_FILE" for n in secret_like}
    assert sorted(wanted - documented()) == []


def test_the_concurrency_cap_of_four_is_documented() -> None:
    text = ENV_EXAMPLE.read_text()
    block = text.split("WORKER_CONCURRENCY=")[0].rsplit("\n\n", 1)[-1]
    assert "cap 4" in block.lower() or "cap of 4" in block.lower()


@pytest.mark.parametrize(
    "pattern",
    [
        r"://[^:/\s]+:(?!REPLACE-ME@)[^@\s]+@",  # a URL with a password other than the placeholder
        r"\bsk-[A-Za-z0-9]{8,}",  # an OpenAI-style key
        r"^[^#\s]*(PASSWORD|API_KEY|DATABASE_URL)=\S",  # an active (uncommented) secret assignment
        r"-----BEGIN",  # key material
    ],
)
def test_env_example_holds_no_real_secret(pattern: str) -> None:
    assert not re.search(pattern, ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
