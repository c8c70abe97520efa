"""Deletes a kind cluster once the process that made it is gone without saying "done".

`python -m tests.harness.reaper KIND NAME`, started in its own session with a pipe on stdin:
end of file without a "done" line means the owner died (SIGKILL, a second Ctrl-C during
teardown, an OOM kill), and nobody else would delete the cluster.
"""

from __future__ import annotations

import signal
import sys

from .kind import remove_cluster


def main(argv: list[str]) -> int:
    kind, name = argv[1], argv[2]
    # Ctrl-C and SIGTERM aimed at the test run must not stop the one who cleans up after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    said = sys.stdin.read()
    if "done" in said.split():
        return 0
    remove_cluster(kind, name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
