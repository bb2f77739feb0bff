"""Pieces the fit loop is built from: device and precision, optimizer and lr schedule,
loss with class weights, mixup/cutmix."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from timm.data import Mixup
from torch import nn

from rxvision.config import RxVisionConfig, SchedulerConfig, TrainingConfig
from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """How one training step runs: the autocast dtype (None = fp32) and whether a GradScaler
    is needed (fp16 only)."""

    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_device_type(cfg: TrainingConfig) -> str:
    """'cpu' or 'cuda' from ``accelerator`` (auto = cuda when there is one)."""
    has_cuda = torch.cuda.is_available()
    if cfg.accelerator == "cuda" and not has_cuda:
        raise RxVisionError(
            "training.accelerator=cuda but PyTorch sees no CUDA GPU",
            "use training.accelerator=auto or cpu (and precision 32 or bf16)",
        )
    if cfg.accelerator == "cpu":
        return "cpu"
    return "cuda" if has_cuda else "cpu"


def resolve_precision(cfg: TrainingConfig, device_type: str) -> Precision:
    if cfg.precision == "32":
        return Precision(device_type, None, False)
    if cfg.precision == "bf16":
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RxVisionError(
                "this GPU does not support bf16", "use training.precision=16 (fp16) or 32"
            )
        return Precision(device_type, torch.bfloat16, False)
    if device_type != "cuda":
        raise RxVisionError(
            "training.precision=16 (fp16 with a GradScaler) needs a CUDA GPU; this run is on the CPU",
            "use training.precision=bf16 (bf16 autocast works on CPU) or 32",
        )
    return Precision(device_type, torch.float16, True)


def check_devices(cfg: TrainingConfig, device_type: str) -> None:
    if device_type == "cuda" and cfg.devices > torch.cuda.device_count():
        raise RxVisionError(
            f"training.devices={cfg.devices} but only {torch.cuda.device_count()} CUDA GPU(s) are visible",
            "lower training.devices",
        )
    if device_type == "cpu" and cfg.devices > (os.cpu_count() or 1) * 4:
        raise RxVisionError(
            f"training.devices={cfg.devices} CPU processes on {os.cpu_count()} cores is far oversubscribed",
            "use at most one process per core",
        )


def threads_per_process(cfg: TrainingConfig, device_type: str) -> int | None:
    """CPU threads for each process: the configured number, or the cores split among DDP
    processes (so N processes do not fight over the same cores)."""
    if cfg.num_threads is not None:
        return cfg.num_threads
    if cfg.devices > 1 and device_type == "cpu":
        return max(1, (os.cpu_count() or 1) // cfg.devices)
    return None


def build_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over all parameters (frozen ones included, so unfreezing needs no new optimizer;
    AdamW skips parameters without gradients). No weight decay on biases and norm weights;
    backbone parameters learn at ``lr * backbone_lr_scale``."""
    ocfg = cfg.optimizer
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        key = (name.startswith("backbone."), param.ndim > 1 and not name.endswith(".bias"))
        buckets.setdefault(key, []).append(param)
    groups = [
        {
            "params": params,
            "lr": ocfg.lr * (ocfg.backbone_lr_scale if is_backbone else 1.0),
            "weight_decay": ocfg.weight_decay if decay else 0.0,
        }
        for (is_backbone, decay), params in sorted(buckets.items())
    ]
    return torch.optim.AdamW(groups, lr=ocfg.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, updates_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """CosineAnnealingWarmRestarts after an optional linear warmup.

    With ``interval=step`` the scheduler is stepped after every optimizer update and T_0 /
    warmup are converted from epochs into updates (T_0 * updates_per_epoch), so the curve is
    smooth within an epoch; with ``interval=epoch`` it is stepped once per epoch. Either way
    the learning rate of epoch 1 / update 1 is the warmup start (or the base lr)."""
    if cfg.name == "none":
        return None
    unit = updates_per_epoch if cfg.interval == "step" else 1
    cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.T_0 * unit, T_mult=cfg.T_mult, eta_min=cfg.eta_min
    )
    warmup = cfg.warmup_epochs * unit
    if warmup == 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """sklearn's 'balanced' weights n / (k * count); a class absent from train is an error."""
    y = np.asarray(labels, dtype=np.int64)
    missing = sorted(set(range(num_classes)) - set(y.tolist()))
    if missing:
        raise RxVisionError(
            f"class_weights=balanced but classes {missing} have no training images",
            "fix the split or use training.class_weights=none",
        )
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=y)
    return torch.tensor(weights, dtype=torch.float32)


def build_mixup(cfg: TrainingConfig, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix (soft targets that sum to one, label smoothing folded in)."""
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return None
    return Mixup(
        mixup_alpha=cfg.mixup_alpha,
        cutmix_alpha=cfg.cutmix_alpha,
        label_smoothing=cfg.label_smoothing,
        num_classes=num_classes,
    )


def updates_per_epoch(batches: int, accumulate: int) -> int:
    return max(1, math.ceil(batches / accumulate))


def config_digest(cfg: RxVisionConfig) -> dict[str, object]:
    """The parts of the config a resumed run must share with the interrupted one."""
    m = cfg.model
    # architecture only: freezing/unfreezing, dropout or weights source may change on resume
    return {
        "backbone": m.backbone,
        "head": m.head,
        "attention_heads": m.attention_heads,
        "image_size": cfg.data.image_size,
    }
