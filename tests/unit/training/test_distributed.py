"""The launcher's processes: the same engine under a real `torchrun --nproc_per_node=2` (gloo,
env:// rendezvous), and spawned DDP workers that end when their parent is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rxvision.training.distributed import from_environment

TESTS = Path(__file__).parent

TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from tiny_train_data import colour_dataset, tiny_config
    from rxvision.training import TrainingHook, fit_datasets

    class Hook(TrainingHook):
        def on_train_start(self, info):
            Path(sys.argv[2]).write_text(json.dumps({{"world_size": info["world_size"],
                                                     "pid": os.getpid()}}))

    cfg = tiny_config(epochs=2, devices=1, early_stopping={{"enabled": False}})
    result = fit_datasets(cfg, colour_dataset(48, seed=0), colour_dataset(25, seed=1),
                          ["a", "b", "c"], Path(sys.argv[1]), hooks=[Hook()])
    print(json.dumps({{"rank": int(os.environ["RANK"]), "epochs_run": result.epochs_run,
                      "val_accuracy": [r["val_accuracy"] for r in result.history]}}))
    """
)

SPAWN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from rxvision.training import distributed as ddp

    def entry(rv, ready):
        (Path(ready) / f"{rv.rank}.pid").write_text(str(os.getpid()))
        time.sleep(300)

    if __name__ == "__main__":
        ddp.spawn(entry, 2, (sys.argv[1],), Path(sys.argv[1]))
    """
)


def test_rendezvous_comes_from_torchrun_variables_only_when_all_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert from_environment() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert from_environment() is None  # LOCAL_RANK missing: not a torchrun launch
    monkeypatch.setenv("LOCAL_RANK", "1")
    rv = from_environment()
    assert (rv.rank, rv.world, rv.local_rank, rv.init_method) == (3, 4, 1, "env://")


@pytest.mark.slow
def test_the_engine_trains_under_torchrun_with_two_gloo_ranks(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(TESTS)))
    info = tmp_path / "start.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path / "run"),
            str(info),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert all(r["epochs_run"] == 2 for r in results)
    assert results[0]["val_accuracy"] == results[1]["val_accuracy"]  # both read rank 0's run
    for acc in results[0]["val_accuracy"]:  # gathered from both shards: a multiple of 1/25
        assert acc * 25 == pytest.approx(round(acc * 25))
    assert json.loads(info.read_text())["world_size"] == 2


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_spawned_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(SPAWN_SCRIPT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids if _alive(pid)]
    for pid in survivors:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors
