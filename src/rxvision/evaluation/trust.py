"""How far an answer can be trusted, measured on the test split: coverage and size of the
conformal prediction sets (with bootstrap intervals), how often answers are uncertain or
unknown, behavioural invariance under harmless transforms, and per-class accuracy floors."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy import stats

from rxvision.calibration import CalibratedBatch
from rxvision.config import EvaluationConfig

# brightness change of the "brightness" transform (pixel values times this)
BRIGHTNESS_FACTOR = 1.1
JPEG_QUALITY = 70


def _hflip(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def _rot90(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb))


def _jpeg70(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _brightness(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * BRIGHTNESS_FACTOR, 0, 255).astype(np.uint8)


# transforms of the raw RGB image (before the eval transform) that must not change the label:
# pills lie in any orientation, photos are re-encoded and lit differently
INVARIANCE_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hflip": _hflip,
    "rot90": _rot90,
    "jpeg70": _jpeg70,
    "brightness": _brightness,
}


def _bootstrap_means(
    columns: Sequence[np.ndarray], cfg: EvaluationConfig
) -> list[tuple[float, float]]:
    """Percentile bootstrap interval of each column's mean, from the same paired resamples."""
    n = len(columns[0])
    if cfg.bootstrap_samples == 0 or n < 2:
        return [(math.nan, math.nan)] * len(columns)

    def statistic(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.stack([c.mean(axis=axis) for c in cols])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            [np.asarray(c, dtype=np.float64) for c in columns],
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=cfg.bootstrap_samples,
            confidence_level=cfg.confidence_level,
            method="percentile",
            rng=np.random.default_rng(cfg.seed),
        )
    low, high = res.confidence_interval
    return [(float(lo), float(hi)) for lo, hi in zip(np.atleast_1d(low), np.atleast_1d(high))]


def set_metrics(
    batch: CalibratedBatch, labels: np.ndarray, target: float, cfg: EvaluationConfig
) -> dict[str, float]:
    """Empirical coverage (share of sets holding the true label) and mean set size, each with
    a bootstrap interval, plus the shares of uncertain and unknown answers."""
    labels = np.asarray(labels, dtype=np.int64)
    covered = batch.sets[np.arange(len(labels)), labels].astype(np.float64)
    size = batch.set_size.astype(np.float64)
    (cov_lo, cov_hi), (size_lo, size_hi) = _bootstrap_means([covered, size], cfg)
    return {
        "coverage": float(covered.mean()),
        "coverage_ci_low": cov_lo,
        "coverage_ci_high": cov_hi,
        "coverage_target": float(target),
        "mean_set_size": float(size.mean()),
        "mean_set_size_ci_low": size_lo,
        "mean_set_size_ci_high": size_hi,
        "singleton_rate": float((size == 1).mean()),
        "uncertain_rate": float(batch.uncertain.mean()),
        "unknown_rate": float(batch.unknown.mean()),
    }


def invariance_rows(
    base_pred: np.ndarray, transformed: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per transform: the share of test images whose predicted label changes, and its
    complement, the invariance (1.0 = the transform never changes the answer)."""
    rows = []
    for name, pred in transformed.items():
        changed = np.asarray(pred) != np.asarray(base_pred)
        rows.append(
            {
                "transform": name,
                "label_changed": float(changed.mean()),
                "invariance": float(1.0 - changed.mean()),
                "images": int(changed.size),
            }
        )
    return rows


def invariance_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {f"invariance_{r['transform']}": r["invariance"] for r in rows}


def class_accuracy_rows(per_class: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy (recall) of every class with test images, worst first."""
    rows = [
        {"class": r["class"], "accuracy": float(r["recall"]), "support": int(r["support"])}
        for r in per_class
        if r["support"] > 0
    ]
    return sorted(rows, key=lambda r: r["accuracy"])


def worst_class_accuracy(per_class: Sequence[dict[str, Any]]) -> float:
    rows = class_accuracy_rows(per_class)
    return rows[0]["accuracy"] if rows else math.nan
