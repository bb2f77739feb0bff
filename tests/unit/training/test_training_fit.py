"""The fit loop end to end on tiny real data: history, checkpoints, best model, bf16, hooks,
resume after SIGKILL and DDP with two gloo processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_train_data import colour_dataset, tiny_config
from torch.utils.data import TensorDataset

from rxvision.errors import RxVisionError
from rxvision.training import TrainingHook, fit_datasets

CLASSES = ["a", "b", "c"]
HISTORY_KEYS = {
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "lr",
    "epoch_time_s",
    "images_per_s",
}


class FileHook(TrainingHook):
    """Appends every call (with the calling pid) to a JSON-lines file; picklable."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, event: str, payload: Any) -> None:
        with self.path.open("a") as fh:
            fh.write(
                json.dumps({"event": event, "pid": os.getpid(), "payload": payload}, default=str)
                + "\n"
            )

    def on_train_start(self, info: dict[str, Any]) -> None:
        self._write("start", {"start_epoch": info["start_epoch"], "world_size": info["world_size"]})

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self._write("epoch", {"epoch": epoch, **metrics})

    def on_train_end(self, summary: dict[str, Any]) -> None:
        self._write("end", summary)


@pytest.fixture()
def data3() -> tuple[TensorDataset, TensorDataset]:
    return colour_dataset(48, seed=0), colour_dataset(24, seed=1)


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fit_learns_writes_checkpoints_and_returns_the_best_model(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=3, early_stopping={"enabled": False}, checkpoint={"save_top_k": 2})
    hook_file = tmp_path / "hooks.jsonl"
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path / "run", hooks=[FileHook(hook_file)])

    assert result.epochs_run == 3 and not result.stopped_early
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert set(result.history[0]) == HISTORY_KEYS
    assert result.history[-1]["val_accuracy"] > 0.8  # the colours are easy
    state = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "epoch",
        "rng",
        "history",
        "early_stopping",
    ):
        assert key in state
    assert len(list((tmp_path / "run").glob("epoch=*.ckpt"))) == 2
    best = torch.load(result.best_checkpoint, weights_only=True)
    best_f1 = max(row["val_macro_f1"] for row in result.history)
    assert best["history"][-1]["val_macro_f1"] == best_f1
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, best["model"][key]), key
    events = _events(hook_file)
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "epoch", "end"]
    assert events[-1]["payload"]["epochs_run"] == 3


def test_select_last_returns_the_final_epochs_weights(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=3, early_stopping={"enabled": False}, checkpoint={"select": "last"})
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert result.best_checkpoint.name.startswith("epoch=003-")
    assert result.best_metrics["val_loss"] == result.history[-1]["val_loss"]
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, last["model"][key]), key


def test_finished_run_is_returned_without_training_again(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=1)
    first = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    mtime = (tmp_path / "last.ckpt").stat().st_mtime_ns
    again = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert again.epochs_run == first.epochs_run == 1
    assert (tmp_path / "last.ckpt").stat().st_mtime_ns == mtime


def test_resuming_with_another_model_is_refused(tmp_path: Path, data3) -> None:
    train, val = data3
    fit_datasets(tiny_config(epochs=1), train, val, CLASSES, tmp_path)
    with pytest.raises(RxVisionError, match="different model"):
        fit_datasets(
            tiny_config(epochs=2, model={"head": "attention", "attention_heads": 2}),
            train,
            val,
            CLASSES,
            tmp_path,
        )


def test_early_stopping_ends_the_run(tmp_path: Path, data3) -> None:
    train, val = data3
    # lr 0 after warmup-free start: nothing improves, so patience 1 stops after epoch 2
    cfg = tiny_config(
        epochs=5,
        optimizer={"lr": 1e-12},
        scheduler={"name": "none"},
        early_stopping={"monitor": "val_loss", "mode": "min", "patience": 1, "min_delta": 0.1},
    )
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert result.stopped_early and result.epochs_run == 2


def test_bf16_training_runs_on_cpu(tmp_path: Path, data3) -> None:
    train, val = data3
    result = fit_datasets(tiny_config(epochs=1, precision="bf16"), train, val, CLASSES, tmp_path)
    row = result.history[0]
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert next(result.model.parameters()).dtype == torch.float32


def test_fp16_on_cpu_fails_before_training(tmp_path: Path, data3) -> None:
    train, val = data3
    with pytest.raises(RxVisionError, match="precision=16"):
        fit_datasets(tiny_config(precision="16"), train, val, CLASSES, tmp_path)
    assert not (tmp_path / "last.ckpt").exists()


def test_unknown_monitor_is_a_clear_error(tmp_path: Path, data3) -> None:
    train, val = data3
    with pytest.raises(RxVisionError, match="(?s)'val_f1'.*choose one of"):
        fit_datasets(tiny_config(checkpoint={"monitor": "val_f1"}), train, val, CLASSES, tmp_path)


def test_gradual_unfreezing_trains_the_backbone_only_from_the_given_epoch(
    tmp_path: Path, data3
) -> None:
    train, val = data3
    cfg = tiny_config(
        epochs=2,
        model={"freeze_backbone": True, "unfreeze_at_epoch": 1},
        early_stopping={"enabled": False},
        checkpoint={"save_top_k": 2, "monitor": "val_loss", "mode": "min"},
    )
    fit_datasets(cfg, train, val, CLASSES, tmp_path)
    ckpts = {
        torch.load(p, weights_only=True)["epoch"]: torch.load(p, weights_only=True)["model"]
        for p in tmp_path.glob("epoch=*.ckpt")
    }
    torch.manual_seed(cfg.training.seed)
    from rxvision.models import build_model

    initial = build_model(cfg.model, 3).state_dict()
    key = (
        "backbone.conv1.weight"
        if "backbone.conv1.weight" in initial
        else next(k for k in initial if k.startswith("backbone."))
    )
    assert torch.equal(ckpts[1][key], initial[key])  # epoch 1: frozen
    assert not torch.equal(ckpts[2][key], initial[key])  # epoch 2: trained


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    from torch.utils.data import Dataset
    sys.path.insert(0, {tests!r})
    from tiny_train_data import colour_dataset, tiny_config
    from rxvision.training import fit_datasets

    class Slow(Dataset):
        def __init__(self, inner):
            self.inner = inner
        def __len__(self):
            return len(self.inner)
        def __getitem__(self, i):
            time.sleep(0.03)  # long enough epochs to be killed inside one
            return self.inner[i]

    cfg = tiny_config(epochs=4, early_stopping={{"enabled": False}})
    result = fit_datasets(
        cfg, Slow(colour_dataset(48, seed=0)), colour_dataset(24, seed=1), ["a", "b", "c"],
        Path(sys.argv[1]),
    )
    print(json.dumps({{
        "epochs_run": result.epochs_run,
        "epochs": [r["epoch"] for r in result.history],
        "weights": float(sum(v.double().sum() for v in result.model.state_dict().values())),
    }}))
    """
)


def _last_epoch(run_dir: Path) -> int:
    try:
        return int(torch.load(run_dir / "last.ckpt", weights_only=True)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_to_the_full_epoch_count(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(Path(__file__).parent)))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600
    while _last_epoch(run_dir) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = _last_epoch(run_dir)
    assert 2 <= killed_at < 4

    done = subprocess.run(
        [sys.executable, str(script), str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    assert resumed["epochs_run"] == 4
    assert resumed["epochs"] == [1, 2, 3, 4]

    fresh = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "fresh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    uninterrupted = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert uninterrupted["epochs"] == resumed["epochs"]
    # same data order, RNG and optimizer state: the resumed run ends where the
    # uninterrupted one does
    assert resumed["weights"] == pytest.approx(uninterrupted["weights"], rel=1e-5)


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_trains_and_only_rank0_reports(tmp_path: Path) -> None:
    train, val = (
        colour_dataset(48, seed=0),
        colour_dataset(25, seed=1),
    )  # odd val size: shards differ
    hook_file = tmp_path / "hooks.jsonl"
    cfg = tiny_config(epochs=2, devices=2, early_stopping={"enabled": False})
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path / "run", hooks=[FileHook(hook_file)])
    assert result.epochs_run == 2
    events = _events(hook_file)
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "end"]
    assert len({e["pid"] for e in events}) == 1 and events[0]["pid"] != os.getpid()
    assert events[0]["payload"]["world_size"] == 2
    # validation gathered from both ranks: accuracy is a multiple of 1/25
    for row in result.history:
        assert row["val_accuracy"] * 25 == pytest.approx(round(row["val_accuracy"] * 25))
    assert (tmp_path / "run" / "last.ckpt").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["16", "bf16"])
def test_mixed_precision_trains_on_cuda(tmp_path: Path, data3, precision: str) -> None:
    train, val = data3
    cfg = tiny_config(epochs=1, precision=precision, accelerator="cuda", num_threads=None)
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (state["scaler"] is not None) == (precision == "16")
    assert all(torch.isfinite(torch.tensor(v)) for v in result.history[0].values())
