"""`make test` runs the suite and the worker's other-major tests side by side
(tests/harness/together.py): any failure fails it, and a signal stops every command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def together(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "tests.harness.together", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_a_failing_side_command_fails_the_run_and_its_output_follows_the_main_one() -> None:
    run = together(
        "--beside", f"side={PY} -c 'print(\"side says\"); raise SystemExit(3)'",
        "--", PY, "-c", "print('main says')",
    )  # fmt: skip
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 3, out
    assert out.index("main says") < out.index("side says"), out


def test_a_failing_main_command_fails_the_run_even_if_the_others_pass() -> None:
    run = together("--beside", f"side={PY} -c pass", "--", PY, "-c", "raise SystemExit(5)")
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 5, out


def test_sigterm_reaches_every_command_and_the_run_waits_for_their_ends(tmp_path: Path) -> None:
    # each command notes the signal, takes a moment to "tear down", then notes its end
    script = (
        "import signal, sys, time, pathlib\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "def stop(n, f):\n"
        "    (d / (sys.argv[2] + '.signal')).write_text(str(n)); time.sleep(1)\n"
        "    (d / (sys.argv[2] + '.ended')).write_text(''); sys.exit(2)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "(d / (sys.argv[2] + '.up')).write_text('')\n"
        "time.sleep(120)\n"
    )
    (tmp_path / "cmd.py").write_text(script)
    cmd = f"{PY} {tmp_path / 'cmd.py'} {tmp_path}"
    run = together("--beside", f"side={cmd} side", "--", *cmd.split(), "main")
    wait_for(lambda: len(list(tmp_path.glob("*.up"))) == 2, 60, "both commands up")
    started = time.monotonic()
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert time.monotonic() - started < 60
    assert run.returncode == 2, out
    for name in ("main", "side"):
        assert (tmp_path / f"{name}.signal").read_text() == str(int(signal.SIGTERM))
        assert (tmp_path / f"{name}.ended").exists()


def test_each_command_reports_its_own_time_not_the_time_it_was_waited_for() -> None:
    # the side command ends at once; MAIN takes 3 s: the side's time must not be MAIN's
    run = together("--beside", f"side={PY} -c pass", "--", PY, "-c", "import time; time.sleep(3)")
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    summary = out[out.rindex("[together]") :]
    assert "main: exit 0 in 0 min 3 s" in summary, summary
    assert "side: exit 0 in 0 min 0 s" in summary, summary
