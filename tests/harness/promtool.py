"""Evaluate the chart's alert rules with Prometheus's own engine (`promtool test rules`).

The series come from a real /metrics scrape; promtool replays them as constant input series and
reports which alerts fire with which labels. Annotations are left out of the comparison (their
text is templated); labels and the expression are what select a resource.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.harness import tiers

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)$")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        tiers.unavailable("cluster", "promtool not found (apt-get install prometheus)")
    return path


def samples(text: str, prefix: str, **match: str) -> list[tuple[str, str]]:
    """(series, value) of every sample whose name starts with `prefix` and whose labels match."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or not m["name"].startswith(prefix):
            continue
        labels = m["labels"] or "{}"
        if all(f'{k}="{v}"' in labels for k, v in match.items()):
            out.append((m["name"] + labels, m["value"]))
    return out


def rule_groups(prometheus_rule: dict[str, Any]) -> dict[str, Any]:
    groups = []
    for group in prometheus_rule["spec"]["groups"]:
        rules = [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]]
        groups.append({"name": group["name"], "rules": rules})
    return {"groups": groups}


def firing(
    workdir: Path,
    prometheus_rule: dict[str, Any],
    series: list[tuple[str, str]],
    eval_time: str,
    expected: dict[str, list[dict[str, str]]],
) -> subprocess.CompletedProcess[str]:
    """Run promtool: `expected` maps alert names to the label sets that must fire at eval_time
    (an empty list: must not fire). Returns the finished process (returncode 0 = as expected)."""
    (workdir / "rules.yaml").write_text(yaml.safe_dump(rule_groups(prometheus_rule)))
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": f"{v}x120"} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": eval_time,
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels} for labels in label_sets],
                    }
                    for name, label_sets in expected.items()
                ],
            }
        ],
    }
    (workdir / "test.yaml").write_text(yaml.safe_dump(test))
    return subprocess.run(
        [promtool(), "test", "rules", "test.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
