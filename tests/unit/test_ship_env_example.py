"""`.env.example` lists every setting the three programs read, and no real secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

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


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable a settings parser asked for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


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


def test_every_setting_the_worker_parser_reads_is_documented() -> None:
    from learnops_worker.settings import from_env

    env = RecordingEnv()
    from_env(env)
    assert len(env.asked) > 10
    assert sorted(env.asked - documented()) == []


def test_every_setting_the_dump_runner_documents_in_its_help_is_listed() -> None:
    from learnops_dump.settings import help_table

    names = {n for env, _, _ in help_table() for n in env.split("/")}
    assert "BACKUP_COMPRESSION" in names
    assert sorted(names - documented()) == []


def test_every_setting_the_operator_parser_reads_is_documented() -> None:
    from learnops_operator.settings import parser

    env = RecordingEnv()
    parser(env)
    assert "LEARNOPS_DUMP_IMAGE" in env.asked
    assert sorted(env.asked - documented()) == []


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
