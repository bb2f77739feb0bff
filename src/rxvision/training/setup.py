"""Pieces the fit loop is built from: device and precision, optimizer and lr schedule,
loss with class weights, mixup/cutmix, BatchNorm handling and the time budget's plan."""

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

    @property
    def name(self) -> str:
        """The resolved setting, as training.precision spells it."""
        return {None: "32", torch.float16: "16", torch.bfloat16: "bf16"}[self.dtype]

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
    """The precision a run trains in; ``auto`` is bf16 where the device supports it, else
    fp32 (never fp16: it needs loss scaling and can overflow where bf16 cannot). On a CPU the
    Trainer then keeps bf16 only if faster_cpu_precision measures it cheaper."""
    if cfg.precision == "auto":
        if device_type == "cuda":
            ok = torch.cuda.is_bf16_supported()
        else:
            from rxvision.training.cpu_bf16 import cpu_supports_bf16

            ok = cpu_supports_bf16()
        return Precision(device_type, torch.bfloat16 if ok else None, False)
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
            "training.precision=16 (fp16 with a GradScaler) needs a CUDA GPU; this run is on "
            "the CPU",
            "use training.precision=bf16 (bf16 autocast works on CPU) or 32",
        )
    return Precision(device_type, torch.float16, True)


# bf16 must cost at most this share of fp32's CPU time to be chosen: a near tie goes to fp32,
# whose gradients are 20-50x closer to float64's (docs/benchmarks.md), and the probe's few
# passes are a few percent noisy: a 2% "win" for bf16 is a tie.
BF16_MAX_COST = 0.9


def cheaper_precision(cpu_s: dict[str, float]) -> str:
    """bf16 ("bf16") where its measured CPU time is at most BF16_MAX_COST x fp32's, else "32"."""
    return "bf16" if cpu_s["bf16"] <= BF16_MAX_COST * cpu_s["32"] else "32"


def faster_cpu_precision(
    model: nn.Module, input_shape: tuple[int, ...], channels_last: bool, rounds: int = 2
) -> Precision:
    """``precision: auto`` on a CPU with native bf16: bf16 autocast where it trains ``model``
    on a batch of ``input_shape`` in clearly less CPU time than fp32 (cheaper_precision),
    measured here (bf16 is not always faster: with channels_last this model was faster in
    fp32 on an AVX-512 BF16 CPU, docs/benchmarks.md). A few forward/backward passes on random
    input, alternating, the best of ``rounds`` each; weights, gradients, BatchNorm statistics
    and the RNG are left as they were. CPU time, not wall time, so other jobs on the machine
    matter less."""
    import time

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    was_training = model.training
    model.train()
    x = torch.randn(*input_shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    options = {"32": Precision("cpu", None, False), "bf16": Precision("cpu", torch.bfloat16, False)}
    spent: dict[str, list[float]] = {name: [] for name in options}
    try:
        for _ in range(rounds + 1):  # the first round warms up (oneDNN picks its kernels)
            for name, precision in options.items():
                start = time.process_time()
                with precision.autocast():
                    out = model(x)
                out.float().sum().backward()
                spent[name].append(time.process_time() - start)
                model.zero_grad(set_to_none=True)
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
    best = {name: min(times[1:]) for name, times in spent.items()}  # the warm-up left out
    choice = cheaper_precision(best)
    log.info(
        "precision auto: a training pass takes %.0f ms in fp32, %.0f ms in bf16 here: %s",
        best["32"] * 1e3,
        best["bf16"] * 1e3,
        choice,
    )
    return options[choice]


def check_devices(cfg: TrainingConfig, device_type: str) -> None:
    if device_type == "cuda" and cfg.devices > torch.cuda.device_count():
        raise RxVisionError(
            f"training.devices={cfg.devices} but only {torch.cuda.device_count()} CUDA GPU(s) "
            "are visible",
            "lower training.devices",
        )
    if device_type == "cpu" and cfg.devices > (os.cpu_count() or 1) * 4:
        raise RxVisionError(
            f"training.devices={cfg.devices} CPU processes on {os.cpu_count()} cores is far "
            "oversubscribed",
            "use at most one process per core",
        )


def threads_per_process(
    cfg: TrainingConfig, device_type: str, processes: int | None = None
) -> int | None:
    """CPU threads for each process: the configured number, or the cores split among the
    DDP processes on this node (``processes``, default training.devices), so N processes do
    not fight over the same cores."""
    if cfg.num_threads is not None:
        return cfg.num_threads
    processes = cfg.devices if processes is None else processes
    if processes > 1 and device_type == "cpu":
        return max(1, (os.cpu_count() or 1) // processes)
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
    optimizer: torch.optim.Optimizer,
    cfg: SchedulerConfig,
    updates_per_epoch: int,
    total_epochs: int | None = None,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule, stepped after every optimizer update (``interval=step``:
    epochs are converted into updates, so the curve is smooth within an epoch) or once per
    epoch. ``cosine_warm_restarts`` restarts every T_0 * T_mult^i epochs after an optional
    linear warmup; ``cosine`` and ``onecycle`` span ``total_epochs`` and end at their minimum.
    The learning rate of update 1 is the warmup start (or the base lr)."""
    if cfg.name == "none":
        return None
    unit = updates_per_epoch if cfg.interval == "step" else 1
    warmup = cfg.warmup_epochs * unit
    if cfg.name in ("cosine", "onecycle"):
        if total_epochs is None:
            raise ValueError(f"scheduler {cfg.name} needs total_epochs")
        total = max(1, total_epochs * unit)
        if cfg.name == "onecycle":
            return _one_cycle(optimizer, cfg, total)
        warmup = min(warmup, total - 1)
        main: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total - warmup), eta_min=cfg.eta_min
        )
    else:
        main = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.T_0 * unit, T_mult=cfg.T_mult, eta_min=cfg.eta_min
        )
    if warmup == 0:
        return main
    linear = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, main], milestones=[warmup])


def _one_cycle(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR with each group's own peak (the backbone's scaled lr stays scaled); cosine
    up from peak/25 over pct_start of the run, then down to about eta_min."""
    peaks = [g.setdefault("peak_lr", g["lr"]) for g in optimizer.param_groups]  # for rebuilds
    start = max(peaks) / 25.0
    final_div = max(1.0, start / cfg.eta_min) if cfg.eta_min > 0 else 1e4
    return torch.optim.lr_scheduler.OneCycleLR(
        # one step more than updates: the lr after the last update's step is the minimum
        optimizer,
        max_lr=peaks,
        total_steps=total + 1,
        pct_start=cfg.pct_start,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=final_div,
        cycle_momentum=False,
    )


def spans_run(cfg: SchedulerConfig) -> bool:
    """Whether the schedule's length is the run's epoch count (rebuilt when it changes)."""
    return cfg.name in ("cosine", "onecycle")


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


def imbalance_ratio(labels: Sequence[int], num_classes: int) -> float:
    """Largest / smallest class count among the classes present (1.0 = balanced)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if len(present) else 1.0


def resolve_class_weights(cfg: TrainingConfig, labels: Sequence[int], num_classes: int) -> str:
    """'balanced' or 'none'. ``auto`` weights the loss when the training split is imbalanced
    by at least class_weights_min_ratio, unless a balanced sampler already evens the classes."""
    if cfg.class_weights != "auto":
        return cfg.class_weights
    if cfg.sampler == "balanced":
        return "none"
    ratio = imbalance_ratio(labels, num_classes)
    return "balanced" if ratio >= cfg.class_weights_min_ratio else "none"


def configure_batchnorm(model: nn.Module, cfg: TrainingConfig) -> int:
    """Apply bn_momentum to every BatchNorm layer; returns how many there are."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if cfg.bn_momentum is not None:
        for bn in bns:
            bn.momentum = cfg.bn_momentum
    return len(bns)


def freeze_bn_statistics(model: nn.Module) -> None:
    """BatchNorm layers to eval mode (running statistics used and kept; called after
    model.train()), their weight and bias still learn."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def plan_epochs(budget_s: float, elapsed_s: float, epochs_done: int, max_epochs: int) -> int:
    """The epoch count that fits ``budget_s`` at the pace of the epochs so far (at least the
    epochs already done, at most ``max_epochs``)."""
    per_epoch = elapsed_s / max(epochs_done, 1)
    fits = int(budget_s // per_epoch) if per_epoch > 0 else max_epochs
    return max(epochs_done, 1, min(max_epochs, fits))


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
