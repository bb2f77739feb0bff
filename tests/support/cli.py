"""`python run.py ...` in a child process, as a user runs it from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_py(
    argv: Sequence[str],
    home: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """run.py with ``argv`` on the state folder ``home`` (RXVISION_HOME), in the environment
    ``env`` (this process's when None), output captured as text; never raises on exit codes."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *argv],
        capture_output=True,
        text=True,
        env={**(os.environ if env is None else env), "RXVISION_HOME": str(home)},
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
