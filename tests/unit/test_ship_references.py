"""Comments and docs point only at things in the repository: no issue or review-point numbers
(they mean nothing to the next reader), and every file they name exists."""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
SKIPPED = ("uv.lock", "tests/harness/gomod/")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".tpl", ".txt", ".sh", ".sql", ".toml", ".env"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".env.example", "NOTES.txt", ".helmignore"}

TRACKER = re.compile(
    r"\b(?:issues?|points?|tickets?|PRs?|pull requests?|findings?)\s*#?\d+\b"
    r"|(?<![\w&/#-])#\d{1,5}\b",
    re.IGNORECASE,
)
# A relative path with a folder (`docs/runbook.md`, `learnops_worker/metrics.py`) or a bare
# Markdown name (`runbook.md`); absolute paths and `$var/...` are runtime paths, not ours.
REFERENCE = re.compile(
    r"(?<![\w./$}{~-])((?:[\w.-]+/)+[\w.-]+\.(?:md|py|sql|yaml|yml|sh|tpl|toml)|[\w.-]+\.md)\b"
)


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


def _texts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of what a reader reads as prose: Python comments and docstrings, and whole
    lines of every other text file (their comments, docs, templates)."""
    source = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".py":
        yield from enumerate(source.splitlines(), 1)
        return
    previous = tokenize.INDENT
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
        elif tok.type == tokenize.STRING and previous in (
            tokenize.INDENT,
            tokenize.NEWLINE,
            tokenize.DEDENT,
        ):
            yield tok.start[0], tok.string  # a docstring (or a bare string statement)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.type


def _prose_files() -> list[Path]:
    files = []
    for path in _tracked():
        rel = path.relative_to(ROOT).as_posix()
        if path == THIS or rel.startswith(SKIPPED) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def test_the_guards_catch_tracker_numbers_and_dangling_files() -> None:
    for text in ("see issue 4, point 8", "fixed in #12", "(PR 7)", "Issue #9"):
        assert TRACKER.search(text), text
    for text in ("color #fff", "a&#39;", "docs/runbook.md#restore-a-backup", "step 3 of 4"):
        assert not TRACKER.search(text), text
    names = [m[1] for m in REFERENCE.finditer("per contracts.md and tests/x/y.py, /tmp/a/b.py")]
    assert names == ["contracts.md", "tests/x/y.py"]


def test_nothing_points_at_an_issue_or_review_point_number() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {m[0]}"
        for path in _prose_files()
        for line, text in _texts(path)
        for m in TRACKER.finditer(text)
    ]
    assert not found


def test_every_file_a_comment_or_doc_names_exists() -> None:
    tracked = {p.relative_to(ROOT).as_posix() for p in _tracked()}

    def exists(name: str, near: Path) -> bool:
        if (near.parent / name).exists() or (ROOT / name).exists():
            return True
        return any(t == name or t.endswith(f"/{name}") for t in tracked)

    dangling = [
        f"{path.relative_to(ROOT)}:{line}: {m[1]}"
        for path in _prose_files()
        for line, text in _texts(path)
        for m in REFERENCE.finditer(text)
        if not exists(m[1], path)
    ]
    assert not dangling
