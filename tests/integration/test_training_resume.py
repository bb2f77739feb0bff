"""A training run killed with SIGKILL resumes when `python run.py --pipeline training` is run
again with the same config and data: a real subprocess on a real local ZenML stack in a
temporary state folder, killed mid-epoch, rerun, ending with the full epoch count and one
continuous history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.overrides import TINY_OVERRIDES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
# the tier's tiny run, with more images, the default split and a fine-tuned backbone, so an
# epoch lasts long enough to be killed in
OVERRIDES = (
    *TINY_OVERRIDES,
    "data.synthetic.images_per_class=40",
    "data.split.val_fraction=0.15",
    "data.split.test_fraction=0.15",
    "model.freeze_backbone=false",
    f"training.epochs={EPOCHS}",
)


def _argv(*extra: str) -> list[str]:
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    return [sys.executable, str(ROOT / "run.py"), "--pipeline", "training", *sets, *extra]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "RXVISION_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _epoch_on_disk(home: Path) -> tuple[int, Path | None]:
    for last in home.rglob("runs/*/last.ckpt"):
        try:
            return int(torch.load(last, weights_only=True)["epoch"]), last.parent
        except (EOFError, RuntimeError, OSError):
            return 0, last.parent
    return 0, None


def test_killed_training_pipeline_resumes_on_rerun_with_one_continuous_history(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_argv(), cwd=ROOT, env=_env(home), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    epoch, run_dir = 0, None
    while epoch < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        epoch, run_dir = _epoch_on_disk(home)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    first_log = (tmp_path / "first.log").read_text()
    assert proc.returncode == -signal.SIGKILL, first_log[-3000:]
    killed_at, run_dir = _epoch_on_disk(home)
    assert run_dir is not None and 1 <= killed_at < EPOCHS, first_log[-3000:]
    before = json.loads((run_dir / "history.json").read_text())

    again = subprocess.run(
        _argv(), cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600, check=False
    )
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert f"resuming training from epoch {killed_at} of {EPOCHS}" in out
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    assert history[: len(before)] == before  # the epochs before the kill are kept as they were
    assert _epoch_on_disk(home)[0] == EPOCHS
