"""The real-data recipe's engine features on the tiny colour data: precision (bf16 on and off,
auto), EMA, schedules that span the run, the time budget, the balanced sampler and class
weights chosen from the imbalance, BatchNorm handling and channels_last."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_train_data import colour_dataset, tiny_config
from torch import nn

from rxvision.config import SchedulerConfig, TrainingConfig
from rxvision.training import TrainingHook, build_scheduler, fit_datasets, resolve_precision
from rxvision.training import loop as loop_module
from rxvision.training.cpu_bf16 import cpu_supports_bf16
from rxvision.training.loaders import BalancedSampler
from rxvision.training.loop import Trainer
from rxvision.training.setup import plan_epochs, resolve_class_weights

CLASSES = ["a", "b", "c"]


@pytest.fixture()
def data3():
    return colour_dataset(48, seed=0), colour_dataset(24, seed=1)


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("precision", ["32", "bf16", "auto"])
def test_colour_data_is_learned_in_fp32_bf16_and_auto_precision(
    tmp_path: Path, data3, precision: str
) -> None:
    train, val = data3
    cfg = tiny_config(epochs=3, precision=precision, early_stopping={"enabled": False})
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert result.history[-1]["val_accuracy"] > 0.8
    assert all(torch.isfinite(torch.tensor(v)) for row in result.history for v in row.values())
    assert next(result.model.parameters()).dtype == torch.float32


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_bf16() -> None:
    flags: set[str] = set()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    has_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu_supports_bf16() is has_bf16
    resolved = resolve_precision(TrainingConfig(precision="auto"), "cpu")
    assert resolved.name == ("bf16" if has_bf16 else "32")
    assert resolve_precision(TrainingConfig(precision="32"), "cpu").dtype is None


def test_ema_weights_are_validated_checkpointed_and_returned_when_best(
    tmp_path: Path, data3
) -> None:
    train, val = data3
    cfg = tiny_config(
        epochs=3, ema={"enabled": True, "decay": 0.9}, early_stopping={"enabled": False}
    )
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    row = result.history[-1]
    assert {"ema_val_loss", "ema_val_accuracy", "ema_val_macro_f1"} <= set(row)
    best = _load(result.best_checkpoint)
    assert best["ema"] is not None
    assert any(
        not torch.equal(best["ema"][k], best["model"][k])
        for k in best["model"]
        if best["model"][k].is_floating_point()
    )
    kept = _load(tmp_path / "last.ckpt")["checkpoints"]["kept"][0]
    assert kept["weights"] == result.best_weights
    source = best["ema"] if result.best_weights == "ema" else best["model"]
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_the_better_of_model_and_ema_is_selected_by_the_monitor_mode() -> None:
    row = {"val_macro_f1": 0.5, "ema_val_macro_f1": 0.7, "val_loss": 0.3, "ema_val_loss": 0.4}
    assert Trainer._selected(row, "val_macro_f1", "max") == ({"val_macro_f1": 0.7}, "ema")
    assert Trainer._selected(row, "val_loss", "min") == ({"val_loss": 0.3}, "model")
    assert Trainer._selected({"val_loss": 0.3}, "val_loss", "min") == ({"val_loss": 0.3}, "model")


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_run_long_schedules_warm_up_and_end_at_their_minimum(name: str) -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = SchedulerConfig(name=name, warmup_epochs=1, eta_min=1e-5, pct_start=0.25)
    sched = build_scheduler(opt, cfg, updates_per_epoch=5, total_epochs=4)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(20):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < 1e-2 / 4  # warmup starts low
    assert max(lrs) == pytest.approx(1e-2, rel=0.05)  # reaches the configured peak
    assert lrs.index(max(lrs)) in range(4, 7)  # after about one epoch of 5 updates
    assert lrs[-1] <= 2e-5  # ends at (about) eta_min after total_epochs * updates


def test_epoch_plan_fits_the_budget_within_the_configured_bounds() -> None:
    assert plan_epochs(budget_s=100, elapsed_s=20, epochs_done=1, max_epochs=10) == 5
    assert plan_epochs(budget_s=100, elapsed_s=20, epochs_done=1, max_epochs=3) == 3
    assert plan_epochs(budget_s=10, elapsed_s=20, epochs_done=1, max_epochs=10) == 1
    assert plan_epochs(budget_s=100, elapsed_s=90, epochs_done=2, max_epochs=10) == 2


class _StopAfter(TrainingHook):
    """Stands in for a kill: raises after epoch ``n``'s checkpoint is written."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.n:
            raise KeyboardInterrupt


def test_time_budget_cuts_epochs_rebuilds_the_schedule_and_survives_resume(
    tmp_path: Path, data3, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = data3
    cfg = tiny_config(
        epochs=6,
        time_budget_s=60.0,
        early_stopping={"enabled": False},
        scheduler={"name": "onecycle", "eta_min": 1e-6},
    )
    monkeypatch.setattr(loop_module, "plan_epochs", lambda *a, **k: 3)  # "3 epochs fit"
    with pytest.raises(KeyboardInterrupt):
        fit_datasets(cfg, train, val, CLASSES, tmp_path, hooks=[_StopAfter(2)])
    assert _load(tmp_path / "last.ckpt")["planned_epochs"] == 3
    monkeypatch.setattr(loop_module, "plan_epochs", lambda *a, **k: 6)  # never asked again
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert result.epochs_run == 3 and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.time_budget is not None and result.time_budget["planned_epochs"] == 3
    assert result.time_budget["budget_s"] == 60.0 and result.time_budget["measured_epoch_s"] > 0
    state = _load(tmp_path / "last.ckpt")
    final_lr = state["optimizer"]["param_groups"][0]["lr"]
    assert final_lr < 3e-3 / 100  # the 3-epoch one-cycle reached its minimum


def test_a_generous_budget_keeps_the_configured_epochs(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=2, time_budget_s=1e6, early_stopping={"enabled": False})
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert result.epochs_run == 2 and result.time_budget["planned_epochs"] == 2


def test_balanced_sampler_evens_classes_deterministically_per_epoch_across_ranks() -> None:
    labels = [0] * 90 + [1] * 10
    ranks = [BalancedSampler(labels, rank, 2, seed=3) for rank in range(2)]
    for s in ranks:
        s.set_epoch(4)
    shards = [list(s) for s in ranks]
    assert all(len(shard) == 50 for shard in shards)
    again = BalancedSampler(labels, 0, 2, seed=3)
    again.set_epoch(4)
    assert list(again) == shards[0]  # the same draw for (seed, epoch): resume-safe
    again.set_epoch(5)
    assert list(again) != shards[0]
    drawn = Counter(labels[i] for shard in shards for i in shard)
    assert 30 <= drawn[1] <= 70  # the 10% class drawn about half of the time


def test_class_weights_auto_follow_the_imbalance_and_the_sampler() -> None:
    balanced_labels, skewed = [0, 1, 2] * 10, [0] * 20 + [1] * 10 + [2] * 10
    assert resolve_class_weights(TrainingConfig(class_weights="auto"), balanced_labels, 3) == "none"
    assert resolve_class_weights(TrainingConfig(class_weights="auto"), skewed, 3) == "balanced"
    cfg = TrainingConfig(class_weights="auto", sampler="balanced")
    assert resolve_class_weights(cfg, skewed, 3) == "none"  # the sampler already balances


def test_imbalanced_data_trains_with_balanced_sampler_and_auto_weights(tmp_path: Path) -> None:
    full = colour_dataset(90, seed=0)
    x, y = full.tensors
    keep = torch.cat([torch.nonzero(y == 0).flatten(), torch.nonzero(y != 0).flatten()[:12]])
    train = torch.utils.data.TensorDataset(x[keep], y[keep])
    cfg = tiny_config(
        epochs=3, sampler="balanced", class_weights="auto", early_stopping={"enabled": False}
    )
    result = fit_datasets(cfg, train, colour_dataset(24, seed=1), CLASSES, tmp_path)
    assert result.history[-1]["val_macro_f1"] > 0.6


def test_frozen_bn_statistics_stay_as_initialised_and_momentum_is_applied(
    tmp_path: Path, data3
) -> None:
    train, val = data3
    result = fit_datasets(
        tiny_config(epochs=1, freeze_bn_stats=True), train, val, CLASSES, tmp_path / "frozen"
    )
    bns = [m for m in result.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    moved = fit_datasets(
        tiny_config(epochs=1, bn_momentum=0.01), train, val, CLASSES, tmp_path / "momentum"
    )
    bns = [m for m in moved.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)


def test_channels_last_trains_the_same_colour_data(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=3, channels_last=True, early_stopping={"enabled": False})
    result = fit_datasets(cfg, train, val, CLASSES, tmp_path)
    assert result.history[-1]["val_accuracy"] > 0.8


def test_no_resume_starts_an_interrupted_run_over(tmp_path: Path, data3) -> None:
    train, val = data3
    cfg = tiny_config(epochs=3, early_stopping={"enabled": False})
    with pytest.raises(KeyboardInterrupt):
        fit_datasets(cfg, train, val, CLASSES, tmp_path, hooks=[_StopAfter(1)])
    starts: list[int] = []

    class Record(TrainingHook):
        def on_train_start(self, info: dict[str, Any]) -> None:
            starts.append(info["start_epoch"])

    fit_datasets(
        tiny_config(epochs=3, resume=False, early_stopping={"enabled": False}),
        train,
        val,
        CLASSES,
        tmp_path,
        hooks=[Record()],
    )
    assert starts == [0]


def test_an_unreadable_last_checkpoint_is_a_clear_error_naming_no_resume(
    tmp_path: Path, data3
) -> None:
    from rxvision.errors import RxVisionError

    train, val = data3
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(RxVisionError, match="(?s)last.ckpt is not a checkpoint.*--no-resume"):
        fit_datasets(tiny_config(epochs=1), train, val, CLASSES, tmp_path)
    result = fit_datasets(tiny_config(epochs=1, resume=False), train, val, CLASSES, tmp_path)
    assert result.epochs_run == 1


def test_precision_probe_leaves_weights_statistics_and_rng_as_they_were() -> None:
    from rxvision.training.setup import faster_cpu_precision

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten())
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    chosen = faster_cpu_precision(model, (4, 3, 16, 16), channels_last=True)
    assert chosen.dtype in (None, torch.bfloat16) and chosen.use_scaler is False
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and torch.equal(torch.get_rng_state(), rng)


def test_a_near_tie_in_the_probe_goes_to_fp32() -> None:
    from rxvision.training.setup import cheaper_precision

    assert cheaper_precision({"32": 1.828, "bf16": 1.798}) == "32"  # 2% is the probe's noise
    assert cheaper_precision({"32": 1.0, "bf16": 0.6}) == "bf16"
    assert cheaper_precision({"32": 1.0, "bf16": 1.2}) == "32"


@pytest.mark.skipif(not cpu_supports_bf16(), reason="auto is fp32 without native bf16")
@pytest.mark.parametrize("measured", ["32", "bf16"])
def test_auto_precision_trains_in_what_the_probe_measured_faster(
    tmp_path: Path, data3, monkeypatch: pytest.MonkeyPatch, measured: str
) -> None:
    from rxvision.training.setup import Precision

    dtype = torch.bfloat16 if measured == "bf16" else None
    monkeypatch.setattr(
        loop_module, "faster_cpu_precision", lambda *a, **k: Precision("cpu", dtype, False)
    )
    summaries: list[dict[str, Any]] = []

    class Record(TrainingHook):
        def on_train_end(self, summary: dict[str, Any]) -> None:
            summaries.append(summary)

    train, val = data3
    cfg = tiny_config(epochs=1, precision="auto", early_stopping={"enabled": False})
    fit_datasets(cfg, train, val, CLASSES, tmp_path, hooks=[Record()])
    assert summaries[0]["precision"] == measured
