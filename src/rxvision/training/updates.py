"""One optimizer update of the fit loop, in pieces that are tested alone: accumulation groups,
a micro-batch's backward, clipping + step, and the error that stops a diverging run."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rxvision.errors import RxVisionError
from rxvision.training.setup import Precision


def accumulation_group(batch_index: int, n_batches: int, accumulate: int) -> tuple[int, bool]:
    """(size of the accumulation group this batch belongs to, whether it closes the group).
    The epoch's last group may be short; its loss is averaged over its own size."""
    group_start = (batch_index // accumulate) * accumulate
    group_len = min(accumulate, n_batches - group_start)
    return group_len, batch_index - group_start == group_len - 1


def backward_micro_batch(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_fn: nn.Module,
    precision: Precision,
    scaler: torch.amp.GradScaler | None,
    group_len: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + backward of one micro-batch; gradients add up to the mean-loss gradient of
    the whole accumulation group (= one batch ``group_len`` times larger). Returns (logits,
    unscaled loss)."""
    with precision.autocast():
        logits = model(x)
    loss = loss_fn(logits.float(), target)
    scaled = loss / group_len
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return logits, loss


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    clip_norm: float | None,
) -> float:
    """Clip the global gradient norm (of the true, unscaled gradients) and step; returns the
    norm before clipping. Without a GradScaler a non-finite norm is returned without stepping
    (the caller stops the run); with one, the scaler skips that step as usual (fp16)."""
    if scaler is not None and clip_norm is not None:
        scaler.unscale_(optimizer)  # clip true gradients, not loss-scaled ones
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if clip_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm))
    else:
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    if scaler is None and not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return norm
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def non_finite_error(
    what: str,
    value: float,
    epoch: int,
    batch: int,
    n_batches: int,
    tcfg: Any,
    precision: str | None = None,
) -> RxVisionError:
    """The run stops rather than train on NaN/inf: say where, under which precision (the
    resolved one, e.g. bf16 for ``auto``), and what usually helps."""
    precision = precision or tcfg.precision
    hints = ["lower training.optimizer.lr", "raise training.scheduler.warmup_epochs"]
    if tcfg.grad_clip_norm is None:
        hints.append("set training.grad_clip_norm (e.g. 1.0)")
    if precision != "32":
        hints.append("try training.precision=32")
    return RxVisionError(
        f"training diverged: the {what} is {value} at epoch {epoch + 1}, step {batch + 1} of "
        f"{n_batches} (precision {precision}); nothing from this step was applied",
        ", or ".join(hints),
    )
