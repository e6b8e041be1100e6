"""A container runtime's share for a test-bed pod that runs a command: `python -m
tests.support.testbed_container CRI_LOG COMMAND...` runs COMMAND, copies each line of its output
to its own stdout and, in the CRI format kwok's kubelet API serves (`<RFC 3339 time> stdout F
<line>`), to CRI_LOG, and exits with COMMAND's exit code (which ends the pod)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone


def main(argv: list[str]) -> int:
    cri_path, command = argv[0], argv[1:]
    with open(cri_path, "a", buffering=1) as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            log.write(f"{stamp} stdout F {line.rstrip(chr(10))}\n")
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
