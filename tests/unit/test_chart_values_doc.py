"""Every value in values.yaml is documented with a `# --` comment (helm-docs convention)."""

from __future__ import annotations

import re

import yaml

from tests.support.ship import CHART

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?: |$)")


def undocumented_keys(text: str) -> list[str]:
    """Keys (at any depth, outside lists) whose comment block above lacks a `# --` line."""
    lines = text.splitlines()
    missing: list[str] = []
    path: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
        documented = False
        for above in reversed(lines[:number]):
            stripped = above.strip()
            if not stripped.startswith("#"):
                break
            if stripped.startswith("# --"):
                documented = True
                break
        if not documented:
            missing.append(".".join(k for _, k in path))
    return missing


def test_every_value_has_a_doc_comment() -> None:
    assert undocumented_keys((CHART / "values.yaml").read_text()) == []


def test_the_doc_check_notices_a_missing_comment() -> None:
    text = "# -- documented\na: 1\nb:\n  # -- nested\n  c: 2\n"
    assert undocumented_keys(text) == ["b"]


def test_commented_examples_are_valid_yaml_when_uncommented() -> None:
    """Examples under empty defaults must be usable as they stand."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^ *[A-Za-z]+: (\[\]|\{\}|\"\")$", line):
            example = []
            for below in lines[number + 1 :]:
                if not below.strip().startswith("#") or below.strip().startswith("# --"):
                    break
                example.append(below.replace("#", "", 1))
            if example and not example[0].lstrip().startswith("e.g."):
                yaml.safe_load("\n".join(example))


def test_values_match_the_schema_names_and_caps() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["worker"]["replicas"] <= 4
    assert values["worker"]["concurrency"] <= 4
    assert values["crds"]["install"] is True
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["metrics"]["prometheusRule"]["enabled"] is False
