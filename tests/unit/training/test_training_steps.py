"""The pieces of one training step: accumulation, clipping, mixup, precision, schedule,
class weights, early stopping and top-k checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rxvision.config import ModelConfig, SchedulerConfig, TrainingConfig
from rxvision.errors import RxVisionError
from rxvision.models import build_model
from rxvision.training import (
    CheckpointManager,
    EarlyStopping,
    balanced_class_weights,
    build_mixup,
    build_scheduler,
)
from rxvision.training.setup import Precision, resolve_precision
from rxvision.training.updates import accumulation_group, backward_micro_batch, optimizer_step

FP32 = Precision("cpu", None, False)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def test_accumulated_micro_batches_give_the_gradient_of_one_large_batch() -> None:
    torch.manual_seed(0)
    # GroupNorm backbone and no dropout: a sample's output does not depend on its batch mates
    model = build_model(
        ModelConfig(backbone="test_efficientnet_gn", pretrained=False, dropout=0.0), 4
    ).train()
    x, y = torch.randn(12, 3, 32, 32), torch.arange(12) % 4
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    backward_micro_batch(model, x, y, loss_fn, FP32, None, group_len=1)
    big = _grads(model)
    model.zero_grad(set_to_none=True)
    for part in range(3):
        sl = slice(part * 4, part * 4 + 4)
        backward_micro_batch(model, x[sl], y[sl], loss_fn, FP32, None, group_len=3)
    accumulated = _grads(model)
    assert len(big) == len(accumulated) > 10
    for a, b in zip(accumulated, big):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_last_short_accumulation_group_is_averaged_over_its_own_size() -> None:
    groups = [accumulation_group(i, n_batches=7, accumulate=3) for i in range(7)]
    assert groups == [
        (3, False),
        (3, False),
        (3, True),
        (3, False),
        (3, False),
        (3, True),
        (1, True),
    ]


@pytest.mark.parametrize("use_scaler", [False, True])
def test_clipping_bounds_the_global_norm_of_the_true_gradients(use_scaler: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1.0
    )  # the update is minus the clipped gradient
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12) if use_scaler else None
    x, y = torch.randn(32, 8) * 50, torch.randint(0, 3, (32,))
    backward_micro_batch(model, x, y, nn.CrossEntropyLoss(), FP32, scaler, group_len=1)
    norm_before = optimizer_step(model, optimizer, scaler, clip_norm=0.5)
    update = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert norm_before is not None and norm_before > 5.0  # clipping really had work to do
    assert update.norm().item() == pytest.approx(0.5, rel=1e-3)


def test_mixup_and_cutmix_targets_are_distributions() -> None:
    np.random.seed(0)
    for mixup_alpha, cutmix_alpha in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        mixup = build_mixup(
            TrainingConfig(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=0.1),
            5,
        )
        x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 5
        mixed, target = mixup(x.clone(), y)
        assert target.shape == (8, 5)
        torch.testing.assert_close(target.sum(1), torch.ones(8))
        assert (target > 0).sum(1).min() >= 2  # really mixed, not one-hot
        assert not torch.equal(mixed, x)
    assert build_mixup(TrainingConfig(), 5) is None


def test_fp16_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(RxVisionError, match="(?s)needs a CUDA GPU.*bf16"):
        resolve_precision(TrainingConfig(precision="16", accelerator="cpu"), "cpu")


def test_bf16_autocast_runs_on_cpu() -> None:
    precision = resolve_precision(TrainingConfig(precision="bf16"), "cpu")
    model = build_model(ModelConfig(backbone="test_resnet", pretrained=False), 3).train()
    with precision.autocast():
        logits = model(torch.randn(4, 3, 32, 32))
    assert logits.dtype == torch.bfloat16
    logits, loss = backward_micro_batch(
        model,
        torch.randn(4, 3, 32, 32),
        torch.tensor([0, 1, 2, 0]),
        nn.CrossEntropyLoss(),
        precision,
        None,
        1,
    )
    assert torch.isfinite(loss) and all(
        torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None
    )


def test_warmup_then_cosine_restarts_stepped_per_update() -> None:
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    cfg = SchedulerConfig(T_0=2, T_mult=2, eta_min=0.0, warmup_epochs=1, interval="step")
    scheduler = build_scheduler(optimizer, cfg, updates_per_epoch=4)
    lrs = []
    for _ in range(4 + 8 + 16 + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # linear warmup over one epoch of updates
    assert lrs[4] == pytest.approx(1.0)  # cosine starts at the base lr
    assert lrs[4 + 4] == pytest.approx(0.5)  # half way through T_0 = 2 epochs = 8 updates
    assert lrs[4 + 8] == pytest.approx(1.0)  # warm restart, next cycle twice as long
    assert lrs[4 + 8 + 8] == pytest.approx(0.5)


def test_per_epoch_schedule_counts_epochs() -> None:
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(
        optimizer, SchedulerConfig(T_0=4, T_mult=1, eta_min=0.0, interval="epoch"), 100
    )
    optimizer.step()
    scheduler.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))


def test_balanced_class_weights_follow_class_frequency() -> None:
    weights = balanced_class_weights([0, 0, 0, 1, 2, 2], 3)
    torch.testing.assert_close(weights, torch.tensor([6 / 9, 6 / 3, 6 / 6]))
    with pytest.raises(RxVisionError, match=r"classes \[2\] have no training images"):
        balanced_class_weights([0, 1, 1], 3)


def test_early_stopping_waits_patience_epochs_beyond_min_delta() -> None:
    stopper = EarlyStopping("val_loss", mode="min", patience=2, min_delta=0.01)
    decisions = [stopper.update({"val_loss": v}) for v in (1.0, 0.8, 0.795, 0.79, 0.5)]
    assert decisions == [False, False, False, True, False]


def test_checkpoint_manager_keeps_the_top_k_and_last(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "val_macro_f1", "max", top_k=2)
    for epoch, score in enumerate((0.5, 0.9, 0.7, 0.8), start=1):
        new, evicted = manager.plan(epoch, {"val_macro_f1": score})
        manager.save({"epoch": epoch}, new, evicted)
    files = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert files == [
        "epoch=002-val_macro_f1=0.9000.ckpt",
        "epoch=004-val_macro_f1=0.8000.ckpt",
        "last.ckpt",
    ]
    assert torch.load(tmp_path / "last.ckpt")["epoch"] == 4
    assert torch.load(manager.best_path)["epoch"] == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_checkpoint_manager_select_last_keeps_the_latest_epochs(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "val_macro_f1", "max", top_k=2, select="last")
    for epoch, score in enumerate((0.5, 0.9, 0.7, 0.8), start=1):
        new, evicted = manager.plan(epoch, {"val_macro_f1": score})
        manager.save({"epoch": epoch}, new, evicted)
    files = sorted(p.name for p in tmp_path.glob("epoch=*.ckpt"))
    assert files == ["epoch=003-val_macro_f1=0.7000.ckpt", "epoch=004-val_macro_f1=0.8000.ckpt"]
    assert torch.load(manager.best_path)["epoch"] == 4


def test_backbone_learns_at_a_scaled_lr_through_the_schedule() -> None:
    from rxvision.config import OptimizerConfig
    from rxvision.training import build_optimizer

    model = build_model(ModelConfig(backbone="test_resnet", pretrained=False), 3)
    cfg = TrainingConfig(
        optimizer=OptimizerConfig(lr=1e-2, backbone_lr_scale=0.1, weight_decay=0.5)
    )
    optimizer = build_optimizer(model, cfg)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone_ids for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(1e-3 if in_backbone.pop() else 1e-2)
        assert group["weight_decay"] in (0.0, 0.5)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    scheduler = build_scheduler(
        optimizer, SchedulerConfig(T_0=4, T_mult=1, eta_min=0.0, interval="step"), 1
    )
    optimizer.step()
    scheduler.step()
    lrs = sorted({round(g["lr"], 12) for g in optimizer.param_groups})
    assert lrs[1] / lrs[0] == pytest.approx(10.0)
