"""One settings shape for the three processes: each field declares its variable, default and doc
once; `--help`, `.env.example`, the chart and manifests/ are held to that declaration, and a bad
value is a configuration error that names the variable and shows no secret."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import learnops_dump.declare
import learnops_operator.declare
import learnops_worker.declare
import pytest
from learnops_dump import cli as dump_cli
from learnops_dump.settings import Settings as DumpSettings
from learnops_operator import cli as operator_cli
from learnops_operator import settings as operator_settings
from learnops_operator.declare import Declared, declared
from learnops_worker import cli as worker_cli
from learnops_worker import settings as worker_settings

from tests.support.ship import ROOT, kustomize, render

URL = "postgresql://learnops_worker@localhost:5432/learnops"
CANARY = "canary-Pa55-7f3e9c"


def _worker(env: Mapping[str, str]) -> Any:
    return worker_settings.from_env({"DATABASE_URL": URL, **env})


PROCESSES: dict[str, tuple[type, Callable[[], argparse.ArgumentParser], Any]] = {
    "operator": (operator_settings.Settings, operator_settings.parser, operator_settings.from_env),
    "dump": (DumpSettings, dump_cli.parser, DumpSettings.from_env),
    "worker": (worker_settings.Settings, worker_cli._parser, _worker),
}


def _shown(d: Declared) -> str:
    return "-" if d.secret or not d.default else d.default


def test_the_three_declaration_helpers_are_one_small_module_in_three_copies() -> None:
    copies = [
        Path(m.__file__ or "").read_text()
        for m in (learnops_operator.declare, learnops_dump.declare, learnops_worker.declare)
    ]
    assert copies[0] == copies[1] == copies[2]
    assert len(copies[0].splitlines()) < 160


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_every_setting_declares_its_variable_default_and_doc_once(process: str) -> None:
    cls, _, from_env = PROCESSES[process]
    settings = list(declared(cls))
    assert len(settings) >= 15
    envs = [d.env for d in settings]
    assert len(envs) == len(set(envs))
    defaults = from_env({})
    for d in settings:
        assert d.doc.endswith((".", ")")), d.env
        assert len(d.doc) > 15, d.env
        if d.parse is not None and d.default:
            # the declared text parses to the dataclass default, which from_env keeps
            assert d.parse(d.env, d.default) == getattr(cls(), d.name), d.env
            if d.name != "heartbeat_seconds":  # derived from the lease when unset
                assert getattr(defaults, d.name) == getattr(cls(), d.name), d.env


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_help_lists_every_setting_with_its_doc_and_default(process: str) -> None:
    cls, parser, _ = PROCESSES[process]
    lines = parser().format_help().splitlines()
    for d in declared(cls):
        [at] = [i for i, line in enumerate(lines) if re.match(rf"  {d.env}(\s|$)", line)]
        assert lines[at + 1] == f"      {d.doc} [default: {_shown(d)}]"
        assert not d.flag or f"flag {d.flag}" in lines[at]


def test_every_operator_flag_gives_the_same_setting_as_its_variable() -> None:
    samples = {
        "LEARNOPS_NAMESPACE": "team-a",
        "LEARNOPS_MAX_WORKER_REPLICAS": "2",
        "LEARNOPS_DUMP_IMAGE": "registry.example/dump@sha256:" + "a" * 64,
        "LEARNOPS_ALLOWED_DUMP_IMAGES": "registry.example/team/,sha256:" + "b" * 64,
        "LEARNOPS_ALLOWED_PRIORITY_CLASSES": "backups,low",
        "LEARNOPS_DUMP_MAX_RESOURCES": "cpu=2,memory=1Gi",
        "LEARNOPS_LIVENESS_PORT": "18080",
        "LEARNOPS_READINESS_PORT": "18081",
        "LEARNOPS_METRICS_PORT": "0",
        "LEARNOPS_LEASE_NAME": "other",
        "LEARNOPS_LEASE_NAMESPACE": "ops",
        "LEARNOPS_LEASE_DURATION": "4",
        "POD_NAME": "op-1",
        "LEARNOPS_SWEEP_INTERVAL": "1.5",
        "LEARNOPS_PENDING_GRACE": "0",
        "LEARNOPS_WORKER_THREADS": "8",
    }
    for d in declared(operator_settings.Settings):
        assert d.flag, d.env
        text = d.switch or samples[d.env]
        argv = [d.flag] if d.switch else [f"{d.flag}={text}"]
        by_flag = operator_settings.from_args(argv, {})
        by_env = operator_settings.from_args([], {d.env: text})
        assert by_flag == by_env, d.env
        assert getattr(by_flag, d.name) != getattr(operator_settings.Settings(), d.name), d.env
    # a flag wins over its variable
    s = operator_settings.from_args(["--liveness-port=7000"], {"LEARNOPS_LIVENESS_PORT": "7001"})
    assert s.liveness_port == 7000


# -- .env.example -------------------------------------------------------------------------


def _env_example() -> dict[str, tuple[bool, str]]:
    """NAME -> (active, value) for every `NAME=` and `# NAME=` line."""
    found: dict[str, tuple[bool, str]] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := re.match(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$", line):
            found.setdefault(m[2], (m[1] is None, m[3]))
    return found


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_env_example_lists_every_declared_variable_with_its_declared_default(
    process: str,
) -> None:
    cls, _, _ = PROCESSES[process]
    example = _env_example()
    for d in declared(cls):
        missing = [name for name in d.names() if name not in example]
        assert not missing, f"{d.env}: {missing} not in .env.example"
        if d.parse is None or d.secret:
            continue
        active, value = example[d.env]
        if d.default:
            assert value == d.default, f".env.example: {d.env}={value}, declared {d.default}"
        else:
            assert not active or value == "", f".env.example sets {d.env} though unset by default"


def test_every_variable_in_env_example_is_declared_by_a_process() -> None:
    names = {name for cls, _, _ in PROCESSES.values() for d in declared(cls) for name in d.names()}
    assert sorted(set(_env_example()) - names) == []


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_the_active_lines_of_env_example_are_valid_settings(process: str, tmp_path: Path) -> None:
    _, _, from_env = PROCESSES[process]
    env = {name: value for name, (active, value) in _env_example().items() if active}
    env["TMPDIR"] = str(tmp_path)
    from_env(env)


# -- the chart and manifests/ ---------------------------------------------------------------


def _container_env(docs: Sequence[dict[str, Any]], component: str) -> Iterator[dict[str, str]]:
    """The environment of each container of a component's Deployment (configMapRefs folded in;
    values from the downward API or Secrets become a placeholder)."""
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        if doc["kind"] != "Deployment" or labels.get("app.kubernetes.io/component") != component:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env: dict[str, str] = {}
            for source in container.get("envFrom") or ():
                env.update(maps[source["configMapRef"]["name"]])
            for item in container.get("env") or ():
                env[item["name"]] = item.get("value", "placeholder")
            yield env


SHIPPED = {"operator": "operator", "worker": "learning-worker"}


def _shipped(process: str) -> list[tuple[str, dict[str, str]]]:
    found = [("chart", env) for env in _container_env(render(), SHIPPED[process])]
    found += [("manifests", env) for env in _container_env(kustomize("."), SHIPPED[process])]
    assert {where for where, _ in found} == {"chart", "manifests"}
    return found


@pytest.mark.parametrize("process", sorted(SHIPPED))
def test_the_chart_and_manifests_set_only_declared_variables_to_valid_values(
    process: str, tmp_path: Path
) -> None:
    cls, _, from_env = PROCESSES[process]
    names = {name for d in declared(cls) for name in d.names()}
    for where, env in _shipped(process):
        assert sorted(set(env) - names) == [], where
        if "DATABASE_URL_FILE" in env:
            url = tmp_path / "url"
            url.write_text(URL)
            env["DATABASE_URL_FILE"] = str(url)
        settings = from_env(env)
        for name in ("liveness_port", "http_port"):
            if hasattr(settings, name):
                assert getattr(settings, name) > 0, where


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEARNOPS_LIVENESS_PORT": "eighty"}, "LEARNOPS_LIVENESS_PORT"),
        ({"LEARNOPS_LEASE_DURATION": "1"}, "LEARNOPS_LEASE_DURATION"),
        ({"LEARNOPS_PLAIN_LOGS": "sometimes"}, "LEARNOPS_PLAIN_LOGS"),
        ({"LEARNOPS_METRICS_PORT": "8080"}, "LEARNOPS_METRICS_PORT"),
        ({"LEARNOPS_DUMP_MAX_RESOURCES": "gpu=1"}, "LEARNOPS_DUMP_MAX_RESOURCES"),
    ],
)
def test_a_bad_operator_setting_exits_2_naming_the_variable(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    err = io.StringIO()
    with redirect_stderr(err):
        assert operator_cli.main([]) == 2
    assert named in err.getvalue()


def test_a_bad_worker_setting_exits_2_naming_it_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text(CANARY)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{CANARY}@localhost/db")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(key))
    monkeypatch.setenv("WORKER_HTTP_PORT", "eighty")
    logging.getLogger().handlers.clear()
    assert worker_cli.main(["stats"]) == 2
    err = capsys.readouterr().err
    [line] = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert line["event"] == "worker.error"
    assert "WORKER_HTTP_PORT" in line["message"]
    assert CANARY not in err
    monkeypatch.setenv("WORKER_HTTP_PORT", "8080")
    settings = worker_settings.from_env()
    assert settings.openai_api_key.reveal() == CANARY
    assert CANARY not in repr(settings)
    assert CANARY not in worker_cli._parser().format_help()


def test_a_bad_dump_setting_exits_2_naming_it_and_still_tells_kubernetes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("BACKUP_TERMINATION_LOG", str(termination))
    monkeypatch.setenv("BACKUP_DATABASE_URL", f"postgresql://u:{CANARY}@localhost/db")
    monkeypatch.setenv("BACKUP_TIMEOUT_SECONDS", "soon")
    assert dump_cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert "BACKUP_TIMEOUT_SECONDS" in err
    assert CANARY not in err
    message = termination.read_text()
    assert json.loads(message)["reason"]
    assert "BACKUP_TIMEOUT_SECONDS" in message
    assert CANARY not in message
    monkeypatch.setenv("BACKUP_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("BACKUP_STORAGE_ROOT", str(tmp_path))
    assert CANARY not in repr(DumpSettings.from_env(dict(os.environ)))


def test_the_settings_tables_in_docs_show_the_declared_defaults() -> None:
    declared_defaults = {
        d.env: d.default
        for cls, _, _ in PROCESSES.values()
        for d in declared(cls)
        if d.parse is not None and d.default and d.name != "heartbeat_seconds"  # min(10, lease/3)
    }
    checked, wrong = 0, []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for line in doc.read_text().splitlines():
            row = re.match(r"^\| `([A-Z][A-Z0-9_]*)`[^|]*\| `([^`]*)` \|", line)
            if row and row[1] in declared_defaults:
                checked += 1
                if row[2] != declared_defaults[row[1]]:
                    wrong.append(
                        f"{doc.name}: {row[1]} = {row[2]}, declared {declared_defaults[row[1]]}"
                    )
    assert checked > 30
    assert not wrong
