"""The deployables never import each other, and `make lint` would say so if one did."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "learnops_operator": ROOT / "operator",
    "learnops_dump": ROOT / "images/dump",
    "learnops_worker": ROOT / "images/learning-worker",
}


def _lint_imports(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_lint_runs_the_import_contract() -> None:
    assert "lint-imports" in (ROOT / "Makefile").read_text()


def test_the_contract_holds_for_the_code_as_it_is() -> None:
    proc = _lint_imports(ROOT, [])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_import_across_deployables_breaks_the_contract(tmp_path: Path) -> None:
    for name, base in PACKAGES.items():
        shutil.copytree(base / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "learnops_operator" / "results.py").open("a") as f:
        f.write("\nfrom learnops_dump import report as _report  # noqa\n")
    proc = _lint_imports(tmp_path, [tmp_path])
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout
    assert "learnops_operator.results -> learnops_dump" in proc.stdout
