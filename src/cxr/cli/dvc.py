"""DVC's command line, run from the commands that read what it tracks (`cxr pr-report`, `cxr experiments`).

Through `python -m dvc` of this interpreter, so the DVC of the environment `cxr` runs in answers, not whichever
`dvc` comes first on PATH.
"""

from __future__ import annotations

import subprocess
import sys


class DvcCommandError(RuntimeError):
    """A DVC command that failed: its message names the command and carries DVC's own error."""


def run_dvc(*args: str) -> str:
    """`dvc <args>`'s standard output; DvcCommandError if it fails."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if result.returncode:
        raise DvcCommandError(f"`dvc {' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout
