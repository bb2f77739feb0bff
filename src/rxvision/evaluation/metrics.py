"""Test-set metrics of a classifier: one flat, named set of numbers the whole project shares
(MLflow, ZenML metadata, the gate, the HTML report), plus the per-class table, confusion
matrix, calibration bins and per-sample correctness that the gate's McNemar test needs."""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from rxvision.config import EvaluationConfig
from rxvision.errors import RxVisionError

logger = logging.getLogger(__name__)

# Probabilities whose rows stray further than this from 1 are taken for logits.
_ROW_SUM_TOLERANCE = 1e-3
# Resamples per scipy.stats.bootstrap batch: bounds memory to ~batch * n indices.
_BOOTSTRAP_BATCH = 200


@dataclass(frozen=True)
class CalibrationBins:
    """Equal-width confidence bins: what the reliability diagram draws and ECE sums."""

    edges: list[float]
    confidence: list[float | None]  # mean confidence per bin (None: empty bin)
    accuracy: list[float | None]  # accuracy per bin (None: empty bin)
    count: list[int]
    ece: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "confidence": list(self.confidence),
            "accuracy": list(self.accuracy),
            "count": list(self.count),
            "ece": self.ece,
        }


@dataclass
class EvaluationResult:
    """Everything measured on one test set; `.metrics` uses the project-wide metric names."""

    metrics: dict[str, float]
    per_class: list[dict[str, Any]]
    confusion: np.ndarray
    correct: np.ndarray
    classes: list[str]
    predicted: np.ndarray
    calibration: CalibrationBins
    absent_classes: list[str] = field(default_factory=list)
    confidence_level: float = 0.95  # of the bootstrap intervals

    def worst_confusions(self, k: int = 10) -> list[dict[str, Any]]:
        """The k largest off-diagonal cells: which true class is mistaken for which."""
        off = self.confusion.astype(np.int64).copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(off, axis=None, kind="stable")[::-1]
        rows = []
        for idx in flat[:k]:
            t, p = np.unravel_index(idx, off.shape)
            count = int(off[t, p])
            if count == 0:
                break
            support = int(self.confusion[t].sum())
            rows.append(
                {
                    "true": self.classes[t],
                    "predicted": self.classes[p],
                    "count": count,
                    "share_of_true": count / support if support else 0.0,
                }
            )
        return rows

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        """JSON-safe (NaN becomes None); `include_samples` adds the per-sample arrays."""
        out: dict[str, Any] = {
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "per_class": [
                {k: (_json_float(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in self.per_class
            ],
            "confusion": self.confusion.astype(int).tolist(),
            "classes": list(self.classes),
            "calibration": self.calibration.to_dict(),
            "absent_classes": list(self.absent_classes),
            "confidence_level": self.confidence_level,
            "worst_confusions": self.worst_confusions(),
        }
        if include_samples:
            out["correct"] = [bool(c) for c in self.correct]
            out["predicted"] = [int(p) for p in self.predicted]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        """Rebuild a result stored with ``to_dict(include_samples=True)`` (e.g. a champion's)."""
        try:
            cal = data["calibration"]
            return cls(
                metrics={
                    k: (math.nan if v is None else float(v)) for k, v in data["metrics"].items()
                },
                per_class=[dict(r) for r in data["per_class"]],
                confusion=np.asarray(data["confusion"], dtype=np.int64),
                correct=np.asarray(data["correct"], dtype=bool),
                classes=list(data["classes"]),
                predicted=np.asarray(data["predicted"], dtype=np.int64),
                calibration=CalibrationBins(
                    edges=list(cal["edges"]),
                    confidence=list(cal["confidence"]),
                    accuracy=list(cal["accuracy"]),
                    count=[int(c) for c in cal["count"]],
                    ece=float(cal["ece"]),
                ),
                absent_classes=list(data.get("absent_classes", [])),
                confidence_level=float(data.get("confidence_level", 0.95)),
            )
        except KeyError as exc:
            raise RxVisionError(
                f"stored evaluation result lacks the field {exc}",
                "store results with EvaluationResult.to_dict(include_samples=True)",
            ) from None


def _json_float(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def check_inputs(
    probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values; returns float64 probabilities and int64 labels."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise RxVisionError(
            f"probabilities must be a 2-D array (samples, classes), got shape {probs.shape}",
            "pass the softmax output of the model, one row per test image",
        )
    if labels.ndim != 1:
        raise RxVisionError(
            f"labels must be a 1-D array of class indices, got shape {labels.shape}"
        )
    if probs.shape[0] != labels.shape[0]:
        raise RxVisionError(
            f"{probs.shape[0]} probability rows but {labels.shape[0]} labels",
            "probabilities and labels must come from the same test samples, in the same order",
        )
    if probs.shape[0] == 0:
        raise RxVisionError(
            "the test set is empty", "check the split: test_fraction and the dataset size"
        )
    if probs.shape[1] != num_classes:
        raise RxVisionError(
            f"probabilities have {probs.shape[1]} columns but there are {num_classes} classes",
            "the model's head and the label map disagree: "
            "evaluate with the classes the model was trained on",
        )
    if num_classes < 2:
        raise RxVisionError(f"need at least 2 classes to evaluate, got {num_classes}")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise RxVisionError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise RxVisionError(
            f"labels must lie in [0, {num_classes - 1}], found {labels.min()}..{labels.max()}",
            "labels are indices into the class list",
        )
    probs = probs.astype(np.float64)
    if not np.all(np.isfinite(probs)):
        raise RxVisionError(
            "probabilities contain NaN or infinite values", "check the model's output"
        )
    sums = probs.sum(axis=1)
    if probs.min() < 0 or np.abs(sums - 1).max() > _ROW_SUM_TOLERANCE:
        raise RxVisionError(
            "probability rows must be non-negative and sum to 1 "
            f"(row sums range {sums.min():.4f}..{sums.max():.4f})",
            "these look like logits: apply softmax first (rxvision.evaluation.predict does)",
        )
    return probs / sums[:, None], labels


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> CalibrationBins:
    """Equal-width bins over the top-1 confidence; ECE = sum_b (n_b/N) |acc_b - conf_b|.

    Hand-written: sklearn's calibration_curve is binary-only and there is no multiclass ECE
    in sklearn/scipy. Bins are right-closed, (lo, hi], the first one also takes 0.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # rounding first keeps a confidence of exactly 0.6 in (0.5, 0.6] despite 0.6 * 10 = 6.000...01
    idx = np.clip(np.ceil(np.round(conf * n_bins, 9)).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(n_bins), where=nonempty)
    mean_acc = np.divide(acc_sum, count, out=np.zeros(n_bins), where=nonempty)
    ece = float(np.sum(count * np.abs(mean_acc - mean_conf)) / len(conf))
    return CalibrationBins(
        edges=[float(e) for e in edges],
        confidence=[float(c) if n else None for c, n in zip(mean_conf, count)],
        accuracy=[float(a) if n else None for a, n in zip(mean_acc, count)],
        count=[int(c) for c in count],
        ece=ece,
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of top-1 confidence with equal-width bins (0 = perfectly calibrated)."""
    p, y = check_inputs(probs, labels, np.asarray(probs).shape[-1])
    return calibration_bins(p, y, n_bins).ece


def scored_classes(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """The classes the macro averages count: those in the truth or the predictions.

    A class absent from both says nothing about the model (counting it as F1 = 0 would sink
    macro-F1 on a small split for no error of the model's), while predicting a class that never
    occurs is an error and counts (F1 = 0). sklearn's default label set is the same.
    """
    return np.union1d(labels, preds)


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """The project's one macro-F1 (class indices in [0, num_classes)): the mean per-class F1
    over :func:`scored_classes`. The evaluation (``macro_f1``), its bootstrap and the training
    loop's validation (``val_macro_f1``) all use it, so the two keys mean the same thing."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return 0.0
    preds = np.asarray(preds, dtype=np.int64)
    return float(_accuracy_and_macro_f1(labels, preds, num_classes)[1, 0])


def _accuracy_and_macro_f1(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, axis: int = -1
) -> np.ndarray:
    """Vectorised over resamples (rows): [accuracy, macro_f1] per row, shape (2, batch).

    Hand-written because sklearn scores one sample set per call, which is ~1000x slower for
    1000 resamples; it counts confusion cells with one bincount per batch. Macro-F1 averages
    over :func:`scored_classes` of each resample (truth or predictions): F1 = 2tp / (2tp + fp +
    fn) is defined exactly for those.
    """
    labels = np.atleast_2d(labels)
    preds = np.atleast_2d(preds)
    batch, _n = labels.shape
    offsets = (np.arange(batch, dtype=np.int64) * num_classes)[:, None]
    true_count = np.bincount((labels + offsets).ravel(), minlength=batch * num_classes).reshape(
        batch, num_classes
    )
    pred_count = np.bincount((preds + offsets).ravel(), minlength=batch * num_classes).reshape(
        batch, num_classes
    )
    hits = labels == preds
    tp = np.bincount((labels + offsets)[hits], minlength=batch * num_classes).reshape(
        batch, num_classes
    )
    denom = true_count + pred_count  # 2tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = denom > 0
    macro_f1 = f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    accuracy = hits.mean(axis=1)
    return np.stack([accuracy, macro_f1])


def bootstrap_intervals(
    labels: np.ndarray, preds: np.ndarray, num_classes: int, cfg: EvaluationConfig
) -> dict[str, float]:
    """Percentile bootstrap CIs of accuracy and macro-F1 from paired resamples of the test set.

    scipy.stats.bootstrap with a vectorised statistic (both metrics from the same resamples).
    Percentile, not BCa: BCa's jackknife costs n extra statistic evaluations (10k at n=10k),
    and with hundreds of test images the two agree to well under a point.
    """
    nan = {
        k: math.nan
        for k in ("accuracy_ci_low", "accuracy_ci_high", "macro_f1_ci_low", "macro_f1_ci_high")
    }
    if cfg.bootstrap_samples == 0:
        return nan
    if len(labels) < 2:
        logger.warning("bootstrap intervals need at least 2 test samples; reporting NaN")
        return nan

    def statistic(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
        return _accuracy_and_macro_f1(y, p, num_classes, axis=axis)

    with warnings.catch_warnings():
        # all resamples equal (e.g. a perfect model) is a valid, zero-width interval here
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (labels, preds),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=cfg.bootstrap_samples,
            batch=_BOOTSTRAP_BATCH,
            confidence_level=cfg.confidence_level,
            method="percentile",
            rng=np.random.default_rng(cfg.seed),
        )
    low, high = res.confidence_interval
    return {
        "accuracy_ci_low": float(low[0]),
        "accuracy_ci_high": float(high[0]),
        "macro_f1_ci_low": float(low[1]),
        "macro_f1_ci_high": float(high[1]),
    }


def top_k_key(k: int) -> str:
    """The metric name of top-k accuracy (``top3_accuracy`` for the default k = 3)."""
    return f"top{k}_accuracy"


def top_k_keys(metrics: Mapping[str, Any]) -> dict[str, int]:
    """The top-k accuracy keys present in a metrics dict, with their k: k is
    ``evaluation.top_k`` of the run that measured them, so readers look it up, not assume 3."""
    found = (re.fullmatch(r"top(\d+)_accuracy", key) for key in metrics)
    return {m.group(0): int(m.group(1)) for m in found if m}


def _top_k(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    num_classes = probs.shape[1]
    if k >= num_classes:
        return 1.0  # the true class is always among all classes; sklearn only warns here
    if num_classes == 2:
        # k == 1 here; sklearn wants 1-D scores for two classes
        return float(top_k_accuracy_score(labels, probs[:, 1], k=1, labels=[0, 1]))
    return float(top_k_accuracy_score(labels, probs, k=k, labels=np.arange(num_classes)))


def point_metrics(probs: np.ndarray, labels: np.ndarray, cfg: EvaluationConfig) -> dict[str, float]:
    """The metrics without intervals, on validated inputs (see `evaluate`)."""
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    all_labels = np.arange(num_classes)
    seen = scored_classes(labels, preds)
    m: dict[str, float] = {"accuracy": float(accuracy_score(labels, preds))}
    m[top_k_key(cfg.top_k)] = _top_k(labels, probs, cfg.top_k)
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            labels, preds, labels=seen, average=avg, zero_division=0
        )
        m[f"{avg}_precision"] = float(p)
        m[f"{avg}_recall"] = float(r)
        m[f"{avg}_f1"] = macro_f1(labels, preds, num_classes) if avg == "macro" else float(f)
    m["ece"] = calibration_bins(probs, labels, cfg.calibration_bins).ece
    m["log_loss"] = float(log_loss(labels, probs, labels=all_labels))
    m["n_samples"] = len(labels)
    return m


def evaluate(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], cfg: EvaluationConfig
) -> EvaluationResult:
    """Measure a model's test-set predictions; bad inputs raise RxVisionError."""
    classes = [str(c) for c in classes]
    num_classes = len(classes)
    probs, labels = check_inputs(probs, labels, num_classes)
    preds = probs.argmax(axis=1)
    metrics = point_metrics(probs, labels, cfg)
    metrics.update(bootstrap_intervals(labels, preds, num_classes, cfg))

    all_labels = np.arange(num_classes)
    p, r, f, s = precision_recall_fscore_support(
        labels, preds, labels=all_labels, average=None, zero_division=0
    )
    per_class = [
        {
            "class": c,
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, c in enumerate(classes)
    ]
    absent = [c for i, c in enumerate(classes) if s[i] == 0]
    if absent:
        logger.warning(
            "%d of %d classes have no test samples (%s%s); their rows are empty and they are "
            "left out of the macro averages",
            len(absent),
            num_classes,
            ", ".join(absent[:5]),
            ", ..." if len(absent) > 5 else "",
        )
    return EvaluationResult(
        metrics=metrics,
        per_class=per_class,
        confusion=confusion_matrix(labels, preds, labels=all_labels),
        correct=preds == labels,
        classes=classes,
        predicted=preds,
        calibration=calibration_bins(probs, labels, cfg.calibration_bins),
        absent_classes=absent,
        confidence_level=cfg.confidence_level,
    )
