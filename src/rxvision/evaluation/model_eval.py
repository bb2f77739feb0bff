"""Evaluating a model bundle: the library side of the training pipeline's evaluation step and
of the gate's champion re-scoring.

One load of the bundle, one prediction pass over the validation + test images (with
embeddings): the validation split is the calibration split (temperature, conformal sets, OOD
threshold), the test split is scored, and both are handed on as the held-out predictions the
drift reference is built from, so no image is predicted twice for the same purpose.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxvision.calibration import Calibration, calibrate, softmax
from rxvision.calibration.fit import fit_calibration
from rxvision.config import RxVisionConfig
from rxvision.data.sources import LabelMap, Sample
from rxvision.errors import RxVisionError
from rxvision.evaluation.metrics import EvaluationResult, calibration_bins, evaluate
from rxvision.evaluation.predict import Predictions, predict
from rxvision.evaluation.trust import (
    INVARIANCE_TRANSFORMS,
    class_accuracy_rows,
    invariance_metrics,
    invariance_rows,
    set_metrics,
    worst_class_accuracy,
)

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' = cuda when PyTorch sees a GPU, else cpu; 'cuda' without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RxVisionError(
            f"evaluation.device={device} but PyTorch sees no CUDA GPU",
            "use evaluation.device=auto or cpu",
        )
    return torch.device(device)


class _PreTransform:
    """A raw-image transform followed by the eval transform (picklable for loader workers)."""

    def __init__(self, pre: Callable[[np.ndarray], np.ndarray], then: Callable[..., Any]) -> None:
        self.pre, self.then = pre, then

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        return self.then(image=self.pre(image))


def predict_samples(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    classes: Sequence[str],
    normalization: Any,
    cfg: RxVisionConfig,
    device: str | torch.device = "auto",
    with_embeddings: bool = False,
    tta: str = "none",
    pre: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Predictions:
    """The model over image files with the eval transform (after `pre`, a raw-image transform
    such as a flip, when given)."""
    from rxvision.data.loader import ImageDataset, build_loader
    from rxvision.data.transforms import build_eval_transform

    transform = build_eval_transform(normalization)
    if pre is not None:
        transform = _PreTransform(pre, transform)
    dataset = ImageDataset(list(samples), LabelMap(list(classes)), transform)
    loader = build_loader(dataset, cfg.data.loader, train=False, seed=cfg.training.seed)
    return predict(
        model, loader, device=resolve_device(device), with_embeddings=with_embeddings, tta=tta
    )


class _Views:
    """Each raw-image transform followed by the eval transform, stacked (V, C, H, W): one
    decode per image for every invariance view (picklable for loader workers)."""

    def __init__(
        self, pres: Sequence[Callable[[np.ndarray], np.ndarray]], then: Callable[..., Any]
    ) -> None:
        self.pres, self.then = list(pres), then

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        views = [torch.as_tensor(self.then(image=pre(image))["image"]) for pre in self.pres]
        return {"image": torch.stack(views)}


def _flattened(loader: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(B, V, C, H, W) batches as (B * V, C, H, W), each label repeated per view."""
    for x, y in loader:
        yield x.flatten(0, 1), torch.as_tensor(y).repeat_interleave(x.shape[1])


def predict_invariance(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    classes: Sequence[str],
    normalization: Any,
    cfg: RxVisionConfig,
    names: Sequence[str],
    device: str | torch.device = "auto",
) -> dict[str, np.ndarray]:
    """Predicted labels of `samples` under each invariance transform in `names`, from one
    loader pass: every image is decoded once and its views go through the model together
    (as many images per forward as an eval batch), instead of one pass per transform."""
    from rxvision.data.loader import ImageDataset, build_loader
    from rxvision.data.transforms import build_eval_transform

    if not names:
        return {}
    views = _Views([INVARIANCE_TRANSFORMS[n] for n in names], build_eval_transform(normalization))
    dataset = ImageDataset(list(samples), LabelMap(list(classes)), views)
    lcfg = cfg.data.loader
    lcfg = lcfg.model_copy(update={"eval_batch_size": max(1, lcfg.eval_batch_size // len(names))})
    loader = build_loader(dataset, lcfg, train=False, seed=cfg.training.seed)
    logits = predict(model, _flattened(loader), device=resolve_device(device)).logits
    labels = logits.reshape(len(samples), len(names), -1).argmax(axis=2)
    return {name: labels[:, i] for i, name in enumerate(names)}


def _calibrated_probs(preds: Predictions, calibration: Calibration | None) -> np.ndarray:
    if calibration is None or preds.logits is None:
        return preds.probs
    return calibrate(preds.logits, calibration).probs


def evaluate_bundle(
    bundle_dir: Path, samples: Sequence[Sample], cfg: RxVisionConfig
) -> EvaluationResult:
    """EvaluationResult of a saved bundle on samples, with its stored calibration applied
    (used to re-score the production model on a candidate's test split)."""
    from rxvision.models.bundle import load_bundle

    device = resolve_device(cfg.evaluation.device)
    loaded = load_bundle(bundle_dir, map_location=device)
    info = loaded.info
    preds = predict_samples(
        loaded.model,
        samples,
        info.classes,
        info.normalization_obj(),
        cfg,
        device=device,
        tta=cfg.evaluation.tta,
    )
    probs = _calibrated_probs(preds, info.calibration_obj())
    return evaluate(probs, preds.labels, info.classes, cfg.evaluation)


@dataclass
class HeldOutPredictions:
    """The evaluation's predictions of the validation + test images, in that order: what the
    drift reference is built from (``probs`` are the plain pass's softmax, as served)."""

    paths: list[str]
    labels: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    n_val: int

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            paths=np.asarray(self.paths, dtype=str),
            labels=self.labels,
            probs=self.probs,
            embeddings=self.embeddings,
            n_val=np.asarray(self.n_val),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> HeldOutPredictions:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(
                paths=[str(p) for p in z["paths"]],
                labels=z["labels"],
                probs=z["probs"],
                embeddings=z["embeddings"],
                n_val=int(z["n_val"]),
            )


@dataclass
class ModelEvaluation:
    """Everything the evaluation step reports and hands on."""

    result: EvaluationResult
    calibration: Calibration
    bundle_dir: Path
    heldout: HeldOutPredictions
    invariance: list[dict[str, Any]] = field(default_factory=list)
    class_accuracy: list[dict[str, Any]] = field(default_factory=list)
    gallery_png: bytes | None = None
    gallery: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics

    def tables(self) -> dict[str, Any]:
        """The calibration and behavioural tables under one key, JSON-ready (model-version
        metadata, the evaluation artifact); `trust` because EvaluationResult.to_dict already
        uses `calibration` for the reliability bins."""
        return {
            "trust": {
                "calibration": self.calibration.to_dict(),
                "invariance": self.invariance,
                "class_accuracy": self.class_accuracy,
                "gallery": self.gallery,
            }
        }


def _gallery(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    preds: Predictions,
    probs: np.ndarray,
    classes: Sequence[str],
    normalization: Any,
    size: int,
    device: torch.device,
) -> tuple[bytes | None, list[dict[str, Any]]]:
    """The `size` most confident mistakes with their maps (a PNG) and their rows."""
    from rxvision.data.images import load_rgb
    from rxvision.data.transforms import preprocess_image
    from rxvision.evaluation.explain import explain_tensors, gallery_png

    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != preds.labels)
    if size == 0 or wrong.size == 0:
        return None, []
    worst = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:size]
    x = torch.from_numpy(
        np.stack([preprocess_image(load_rgb(samples[i].path), normalization) for i in worst])
    ).to(device)
    rows = [
        {
            "image": Path(samples[i].path).name,
            "true": classes[int(preds.labels[i])],
            "predicted": classes[int(predicted[i])],
            "confidence": float(probs[i, predicted[i]]),
        }
        for i in worst
    ]
    titles = [f"{r['true']} -> {r['predicted']} ({r['confidence']:.2f})" for r in rows]
    items = explain_tensors(
        model, x, normalization.mean, normalization.std, titles, [int(predicted[i]) for i in worst]
    )
    return gallery_png(items), rows


def evaluate_trained_bundle(
    bundle_dir: Path,
    val: Sequence[Sample],
    test: Sequence[Sample],
    cfg: RxVisionConfig,
    out_dir: Path,
) -> ModelEvaluation:
    """Calibrate on `val`, score `test`, run the behavioural tests and the mistake gallery,
    and write the final bundle (weights + test metrics + calibration) into `out_dir`."""
    from rxvision.models.bundle import load_bundle, save_bundle

    ev = cfg.evaluation
    if not val:
        raise RxVisionError(
            "the validation split is empty, so there is no calibration split",
            "raise data.split.val_fraction or add images",
        )
    device = resolve_device(ev.device)
    loaded = load_bundle(bundle_dir, map_location=device)
    model, info = loaded.model, loaded.info
    classes, norm = info.classes, info.normalization_obj()
    held = list(val) + list(test)
    preds = predict_samples(
        model, held, classes, norm, cfg, device=device, with_embeddings=True, tta=ev.tta
    )
    n_val = len(val)
    val_p, test_p = preds.subset(slice(0, n_val)), preds.subset(slice(n_val, None))

    # calibration on the plain pass: the service answers from one pass, without TTA
    calibration = fit_calibration(
        val_p.plain_logits, val_p.labels, ev.coverage, ev.confidence_threshold, ev.unknown_rate
    )
    answers = calibrate(test_p.plain_logits, calibration)
    probs = calibrate(test_p.logits, calibration).probs  # what the metrics score (TTA if set)
    result = evaluate(probs, test_p.labels, classes, ev)
    result.metrics.update(set_metrics(answers, test_p.labels, ev.coverage, ev))
    result.metrics["temperature"] = calibration.temperature
    result.metrics["ece_uncalibrated"] = calibration_bins(
        test_p.probs.astype(np.float64), test_p.labels, ev.calibration_bins
    ).ece

    base = test_p.plain_logits.argmax(axis=1)
    transformed = predict_invariance(model, test, classes, norm, cfg, ev.invariance, device)
    inv = invariance_rows(base, transformed)
    result.metrics.update(invariance_metrics(inv))
    result.metrics["worst_class_accuracy"] = worst_class_accuracy(result.per_class)

    png, rows = _gallery(model, list(test), test_p, probs, classes, norm, ev.gallery_size, device)
    final = save_bundle(
        out_dir,
        model,
        classes,
        info.normalization,
        info.config,
        metrics=_finite(result.metrics),
        fingerprint=info.fingerprint,
        calibration=calibration.to_dict(),
    )
    heldout = HeldOutPredictions(
        paths=[str(s.path) for s in held],
        labels=preds.labels,
        probs=softmax_plain(preds),
        embeddings=preds.embeddings,
        n_val=n_val,
    )
    logger.info(
        "calibration %s: T=%.3f, set threshold %.4f, test coverage %.3f, mean set %.2f",
        calibration.version,
        calibration.temperature,
        calibration.set_threshold,
        result.metrics["coverage"],
        result.metrics["mean_set_size"],
    )
    return ModelEvaluation(
        result=result,
        calibration=calibration,
        bundle_dir=final.path,
        heldout=heldout,
        invariance=inv,
        class_accuracy=class_accuracy_rows(result.per_class),
        gallery_png=png,
        gallery=rows,
    )


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def softmax_plain(preds: Predictions) -> np.ndarray:
    """Softmax of the plain pass (equals ``probs`` without TTA)."""
    if preds.plain_logits is None:
        return preds.probs
    return softmax(preds.plain_logits).astype(np.float32)


def report_sections(
    evaluation: ModelEvaluation, class_floor: float | None = None
) -> list[tuple[str, str]]:
    """The trust sections of the HTML report (prediction sets, behaviour, mistakes)."""
    from rxvision.evaluation.plots import trust_sections

    return trust_sections(
        evaluation.result.metrics,
        evaluation.calibration.to_dict(),
        evaluation.invariance,
        evaluation.class_accuracy,
        evaluation.gallery_png,
        evaluation.gallery,
        class_floor,
    )


__all__ = [
    "HeldOutPredictions",
    "ModelEvaluation",
    "evaluate_bundle",
    "evaluate_trained_bundle",
    "predict_invariance",
    "predict_samples",
    "report_sections",
    "resolve_device",
]
