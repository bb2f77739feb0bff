"""Run a classifier over a loader once and keep what evaluation and drift need."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rxvision.errors import RxVisionError

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Softmax probabilities (N, C) float32, true labels (N,) int64, optional embeddings (N, D),
    and the logits behind the probabilities (N, C) float32.

    With flip TTA, ``logits``/``probs`` average the image and its flip; ``plain_logits`` are the
    one pass on the image as given (what the service computes; calibration is fitted on them).
    """

    probs: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    logits: np.ndarray | None = None
    plain_logits: np.ndarray | None = None

    def subset(self, index: slice | np.ndarray) -> Predictions:
        """The rows at `index` (e.g. the calibration part of a val + test pass)."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Predictions(
            probs=self.probs[index],
            labels=self.labels[index],
            embeddings=pick(self.embeddings),
            logits=pick(self.logits),
            plain_logits=pick(self.plain_logits),
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        try:
            return batch["image"], batch["label"]
        except KeyError:
            raise RxVisionError(
                f"a loader batch is a dict with keys {sorted(batch)}; expected 'image' and 'label'"
            ) from None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise RxVisionError(
        f"a loader batch must be (images, labels), got {type(batch).__name__}",
        "evaluate with a loader over a labelled dataset (rxvision.data.loader.build_loader)",
    )


def predict(
    model: nn.Module,
    loader: Iterable[Any],
    device: str | torch.device = "cpu",
    with_embeddings: bool = False,
    progress: bool = False,
    tta: str = "none",
) -> Predictions:
    """Probabilities for every sample of `loader`, in loader order (use an unshuffled loader).

    Any nn.Module whose forward returns logits works. With `with_embeddings`, the model's
    `embed(x)` gives the pooled features (drift monitoring); a model without `embed` is an error.
    The model's train/eval mode is restored afterwards. ``tta="flip"`` also runs the
    horizontally flipped batch and averages the two passes' logits.
    """
    if tta not in ("none", "flip"):
        raise RxVisionError(f"unknown test-time augmentation '{tta}'", "use 'none' or 'flip'")
    if with_embeddings and not callable(getattr(model, "embed", None)):
        raise RxVisionError(
            f"{type(model).__name__} has no embed(x) method, so embeddings cannot be computed",
            "call predict(..., with_embeddings=False) "
            "or use a model from rxvision.models.build_model",
        )
    device = torch.device(device)
    was_training = model.training
    model.eval()
    model.to(device)
    all_logits, plain, labels, embeds = [], [], [], []
    try:
        with torch.inference_mode():
            for batch in tqdm(
                loader, desc="predict", unit="batch", disable=not progress, leave=False
            ):
                x, y = _split_batch(batch)
                x = x.to(device, non_blocking=True)
                if x.ndim == 4:
                    # NHWC: oneDNN's CPU convolutions run ~1.8x faster (docs/benchmarks.md)
                    x = x.contiguous(memory_format=torch.channels_last)
                if with_embeddings and callable(getattr(model, "forward_with_embedding", None)):
                    logits, emb = model.forward_with_embedding(x)  # one backbone pass
                    embeds.append(emb.float().flatten(1).cpu())
                elif with_embeddings:
                    # a model with only forward() and embed(): two backbone passes
                    embeds.append(model.embed(x).float().flatten(1).cpu())
                    logits = model(x)
                else:
                    logits = model(x)
                if (
                    not isinstance(logits, torch.Tensor)
                    or logits.ndim != 2
                    or logits.shape[0] != x.shape[0]
                ):
                    shape = (
                        tuple(logits.shape)
                        if isinstance(logits, torch.Tensor)
                        else type(logits).__name__
                    )
                    raise RxVisionError(
                        f"the model must return logits of shape (batch, classes), got {shape}"
                    )
                logits = logits.float()
                plain.append(logits.cpu())
                if tta == "flip":
                    logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
                all_logits.append(logits.cpu())
                labels.append(torch.as_tensor(y).long().reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not all_logits:
        raise RxVisionError(
            "the loader yielded no batches", "check that the test split is not empty"
        )
    logits_all = torch.cat(all_logits)
    out = Predictions(
        probs=torch.softmax(logits_all, dim=1).numpy().astype(np.float32),
        logits=logits_all.numpy().astype(np.float32),
        plain_logits=torch.cat(plain).numpy().astype(np.float32),
        labels=torch.cat(labels).numpy().astype(np.int64),
        embeddings=torch.cat(embeds).numpy().astype(np.float32) if with_embeddings else None,
    )
    if out.probs.shape[0] != out.labels.shape[0]:
        raise RxVisionError(
            f"the loader gave {out.labels.shape[0]} labels for {out.probs.shape[0]} images"
        )
    logger.info("predicted %d samples over %d classes", len(out), out.probs.shape[1])
    return out
