"""The one serving path: uploaded bytes -> decode -> preprocess -> model -> answers.

The service, batch inference and the deployment's parity images all go through here. The
model call is a coroutine (``Infer``), so the service can put its adaptive batcher in
between and batch inference can call the predictor directly; a ``ModelChain`` decides which
model runs (the primary, or the fallback while the primary's breaker is open).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rxvision.errors import RxVisionError
from rxvision.serving.decode import ImageLimits, InvalidImage, decode_image, decode_images
from rxvision.serving.fallback import ModelChain, ServedModel
from rxvision.serving.predictor import ModelOutput, Prediction, Predictor

log = logging.getLogger(__name__)

Infer = Callable[[np.ndarray], Awaitable[ModelOutput]]


class ModelBusy(Exception):
    """The model call shed this request (its queue cannot meet the latency budget): a 503,
    and no failure of the model."""


class ModelUnavailable(RxVisionError):
    """Neither the primary nor a fallback model could answer."""


@dataclass
class Classified:
    """One request's outcome: answers for the images that decoded, in order, plus what
    traffic logging needs. ``errors`` holds the refused images by index (batch inference
    keeps going past them; the service refuses the whole request instead)."""

    predictions: list[Prediction]
    indices: list[int]
    images: list[np.ndarray]
    file_sizes: list[int]
    output: ModelOutput
    model: ServedModel | None
    errors: dict[int, InvalidImage] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        version = self.model.predictor.model_version if self.model is not None else None
        return {"predictions": [p.to_dict() for p in self.predictions], "model_version": version}


def _decode(
    blobs: Sequence[bytes], limits: ImageLimits, skip_invalid: bool
) -> tuple[list[int], list[np.ndarray], dict[int, InvalidImage]]:
    if not skip_invalid:
        return list(range(len(blobs))), decode_images(blobs, limits), {}
    indices, images, errors = [], [], {}
    for i, data in enumerate(blobs):
        try:
            images.append(decode_image(data, limits))
            indices.append(i)
        except InvalidImage as exc:
            exc.index = i
            errors[i] = exc
    return indices, images, errors


async def classify(
    blobs: Sequence[bytes],
    models: ModelChain,
    limits: ImageLimits,
    *,
    skip_invalid: bool = False,
) -> Classified:
    """Answer one request. Decoding and preprocessing run in a worker thread; the model runs
    through the chain: when a model raises, its breaker counts the failure and the same images
    go to the next model (preprocessed for it). Raises ``InvalidImage`` (unless
    ``skip_invalid``), ``ModelBusy`` or ``ModelUnavailable``."""
    indices, images, errors = await asyncio.to_thread(_decode, blobs, limits, skip_invalid)
    sizes = [len(blobs[i]) for i in indices]
    if not images:
        empty = ModelOutput(np.zeros((0, 0), np.float32), None)
        return Classified([], [], [], [], empty, None, errors)
    failures = []
    for model in models.candidates():
        batch = await asyncio.to_thread(model.predictor.preprocess, images)
        try:
            output = await model.infer(batch)
        except ModelBusy:
            raise
        except Exception as exc:  # noqa: BLE001 - any model failure switches to the fallback
            models.failed(model, exc)
            failures.append(f"{model.name}: {exc}")
            continue
        models.succeeded(model)
        predictions = model.predictor.to_predictions(output)
        return Classified(predictions, indices, images, sizes, output, model, errors)
    raise ModelUnavailable(
        "no model could answer (" + ("; ".join(failures) or "every breaker is open") + ")",
        "retry later; the service logs and /model_info say why the models failed",
    )


def direct_infer(predictor: Predictor) -> Infer:
    """The model call without a batcher: the predictor in a worker thread."""

    async def infer(batch: np.ndarray) -> ModelOutput:
        return await asyncio.to_thread(predictor.infer, batch)

    return infer


def classify_sync(
    blobs: Sequence[bytes], predictor: Predictor, limits: ImageLimits, *, skip_invalid: bool = True
) -> Classified:
    """``classify`` with one predictor and no batcher, for callers outside an event loop
    (batch inference)."""
    chain = ModelChain([ServedModel("primary", predictor, direct_infer(predictor))])
    return asyncio.run(classify(blobs, chain, limits, skip_invalid=skip_invalid))


def prepare(blobs: Sequence[bytes], normalization: Any, limits: ImageLimits) -> np.ndarray:
    """Bytes -> the model's input batch, exactly as served (the deployment's parity images)."""
    from rxvision.serving.predictor import preprocess_batch

    return preprocess_batch(decode_images(blobs, limits), normalization)
