"""`make test` runs the suite in lanes (pytest processes side by side, see the Makefile): every
tier runs exactly once, in the main process or in one lane, and an explicit PYTEST_ARGS or
TEST_WORKERS run is one process unless LANES is given."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIERS = ("unit", "postgres", "cluster", "container", "e2e")


def _together(*make_args: str) -> tuple[list[str], dict[str, list[str]]]:
    """(main pytest argv, {label: argv}) of the recipe `make -n test` would run."""
    out = subprocess.run(
        ["make", "-n", "test", *make_args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    line = out[out.index("-m tests.harness.together") :].replace("\\\n", " ")
    argv = shlex.split(line.splitlines()[0])
    main = argv[argv.index("--") + 1 :]
    beside: dict[str, list[str]] = {}
    for i, word in enumerate(argv[: argv.index("--")]):
        if word == "--beside":
            label, _, command = argv[i + 1].partition("=")
            beside[label] = shlex.split(command)
    return main, beside


def _paths(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("tests/")]


def test_every_tier_runs_exactly_once_across_the_main_process_and_the_lanes() -> None:
    main, beside = _together()
    lanes = {label: argv for label, argv in beside.items() if not label.startswith("PostgreSQL")}
    assert set(lanes) == {"tests/e2e", "tests/postgres"}
    ignored = {a.removeprefix("--ignore=") for a in main if a.startswith("--ignore=")}
    assert _paths(main) == []  # the main process collects all of tests/ but the lanes'
    assert ignored == set(lanes)
    runs = {tier: 0 for tier in TIERS}
    for tier in TIERS:
        runs[tier] += f"tests/{tier}" not in ignored
        runs[tier] += sum(_paths(argv) == [f"tests/{tier}"] for argv in lanes.values())
    assert runs == dict.fromkeys(TIERS, 1)
    for argv in lanes.values():  # as the main process: no benchmarks, the slowest steps shown
        assert argv[argv.index("-m") + 1] == "not bench"
        assert "--durations=15" in argv
        assert "no:cacheprovider" in argv  # processes side by side share no pytest cache
    assert {"PostgreSQL-13", "PostgreSQL-18"} <= set(beside)


def test_an_explicit_selection_or_xdist_runs_in_one_process_unless_lanes_are_given() -> None:
    main, beside = _together("PYTEST_ARGS=tests/unit/test_ground_lanes.py")
    assert [label for label in beside if not label.startswith("PostgreSQL")] == []
    assert _paths(main) == ["tests/unit/test_ground_lanes.py"]
    assert not any(a.startswith("--ignore=") for a in main)
    main, beside = _together("TEST_WORKERS=2")
    assert [label for label in beside if not label.startswith("PostgreSQL")] == []
    assert "-n" in main
    main, beside = _together("LANES=tests/e2e", "PYTEST_ARGS=tests/unit")
    assert "tests/e2e" in beside
    assert "--ignore=tests/e2e" in main
