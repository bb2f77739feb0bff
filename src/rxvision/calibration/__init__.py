"""Calibrated answers from logits, in NumPy alone: temperature scaling, a split-conformal label
set, `uncertain` and an out-of-distribution `unknown` flag.

This module is the contract between evaluation (which fits a :class:`Calibration` and stores
it in the model bundle's ``bundle.json`` under ``calibration``) and every place that answers
with the model (the service, batch inference): they call :func:`apply_calibration` on the
model's logits. It imports nothing but NumPy, so the ONNX serving path stays light; fitting
lives in :mod:`rxvision.calibration.fit` (SciPy).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rxvision.errors import RxVisionError

CALIBRATION_FORMAT = 1
OOD_SCORES = ("energy",)


@dataclass(frozen=True)
class Calibration:
    """What turns logits into a trustworthy answer (fitted on the calibration split).

    temperature: logits are divided by it before the softmax (>1 softens over-confidence).
    set_threshold: a label is in the prediction set when its calibrated probability is at least
      this (split conformal, score 1 - p(true label), at `coverage`).
    confidence_threshold: a top-1 calibrated probability below it makes the answer uncertain.
    ood_threshold: an OOD score above it makes the answer unknown (the score is `ood_score`:
      energy = -T * logsumexp(logits / T); low for images like the calibration ones).
    """

    temperature: float
    set_threshold: float
    coverage: float
    confidence_threshold: float
    ood_threshold: float
    ood_score: str = "energy"
    unknown_rate: float = 0.01
    n_calibration: int = 0
    format: int = CALIBRATION_FORMAT

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise RxVisionError(f"calibration temperature must be > 0, got {self.temperature}")
        if self.ood_score not in OOD_SCORES:
            raise RxVisionError(
                f"unknown OOD score '{self.ood_score}'", f"use one of: {', '.join(OOD_SCORES)}"
            )

    @property
    def version(self) -> str:
        """Content hash of the parameters: two bundles answer alike iff versions match."""
        blob = json.dumps(self._params(), sort_keys=True).encode()
        return "cal-" + hashlib.sha256(blob).hexdigest()[:12]

    def _params(self) -> dict[str, Any]:
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in bundle.json (with the version, for /model_info and answers)."""
        return {**self._params(), "version": self.version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        params = {k: v for k, v in data.items() if k != "version"}
        if params.get("format", CALIBRATION_FORMAT) > CALIBRATION_FORMAT:
            raise RxVisionError(
                f"calibration format {params['format']} is newer than this RxVision "
                f"({CALIBRATION_FORMAT})",
                "upgrade rxvision",
            )
        try:
            cal = cls(**params)
        except TypeError as exc:
            raise RxVisionError(
                f"the bundle's calibration is damaged: {exc}",
                "re-run the evaluation that wrote the bundle",
            ) from None
        if "version" in data and data["version"] != cal.version:
            raise RxVisionError(
                f"calibration version {data['version']} does not match its parameters "
                f"({cal.version}): the bundle was edited",
                "re-run the evaluation that wrote the bundle",
            )
        return cal


@dataclass(frozen=True)
class CalibratedBatch:
    """Per image: calibrated probabilities (N, C), prediction sets (N, C) bool, top-1 index
    and confidence, uncertain, OOD score and unknown (N,)."""

    probs: np.ndarray
    sets: np.ndarray
    top1: np.ndarray
    confidence: np.ndarray
    uncertain: np.ndarray
    ood_score: np.ndarray
    unknown: np.ndarray

    @property
    def set_size(self) -> np.ndarray:
        return self.sets.sum(axis=1)


def _as_logits(logits: Any) -> np.ndarray:
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise RxVisionError(
            f"calibration needs logits of shape (images, classes), got {arr.shape}",
            "pass the model's raw outputs (before softmax)",
        )
    if not np.all(np.isfinite(arr)):
        raise RxVisionError("the logits contain NaN or infinite values", "check the model")
    return arr


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    z = _as_logits(logits) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def energy_score(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """-T * logsumexp(logits / T) (Liu et al. 2020): higher = less like the training data."""
    return -temperature * _logsumexp(_as_logits(logits) / temperature)


def prediction_sets(probs: np.ndarray, set_threshold: float) -> np.ndarray:
    """Labels whose probability reaches the conformal threshold; never empty: an image with no
    label above it gets its top-1 (a superset, so coverage still holds)."""
    sets = probs >= set_threshold
    sets[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return sets


def calibrate(logits: Any, calibration: Calibration) -> CalibratedBatch:
    """The arrays behind every answer (evaluation measures these; serving formats them)."""
    z = _as_logits(logits)
    probs = softmax(z, calibration.temperature)
    top1 = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), top1]
    sets = prediction_sets(probs, calibration.set_threshold)
    ood = energy_score(z, calibration.temperature)
    uncertain = (sets.sum(axis=1) > 1) | (confidence < calibration.confidence_threshold)
    return CalibratedBatch(
        probs=probs.astype(np.float32),
        sets=sets,
        top1=top1,
        confidence=confidence,
        uncertain=uncertain,
        ood_score=ood,
        unknown=ood > calibration.ood_threshold,
    )


def apply_calibration(
    logits: Any, calibration: Calibration | dict[str, Any], classes: list[str] | None = None
) -> list[dict[str, Any]]:
    """The answer fields for each image (row of `logits`), JSON-ready:

    ``probs`` (calibrated, one per class), ``label``/``confidence`` (calibrated top-1),
    ``label_set`` (labels, most probable first), ``uncertain``, ``unknown``, ``ood_score`` and
    ``calibration_version``. Labels are class names when `classes` is given, else indices.
    """
    cal = (
        calibration if isinstance(calibration, Calibration) else Calibration.from_dict(calibration)
    )
    out = calibrate(logits, cal)
    if classes is not None and len(classes) != out.probs.shape[1]:
        raise RxVisionError(
            f"{len(classes)} class names for logits with {out.probs.shape[1]} columns",
            "pass the bundle's classes",
        )

    def name(i: int) -> Any:
        return classes[i] if classes is not None else int(i)

    answers = []
    for row in range(out.probs.shape[0]):
        members = np.flatnonzero(out.sets[row])
        members = members[np.argsort(-out.probs[row, members], kind="stable")]
        answers.append(
            {
                "probs": [float(p) for p in out.probs[row]],
                "label": name(int(out.top1[row])),
                "confidence": float(out.confidence[row]),
                "label_set": [name(int(i)) for i in members],
                "uncertain": bool(out.uncertain[row]),
                "unknown": bool(out.unknown[row]),
                "ood_score": float(out.ood_score[row]),
                "calibration_version": cal.version,
            }
        )
    return answers


__all__ = [
    "CALIBRATION_FORMAT",
    "CalibratedBatch",
    "Calibration",
    "apply_calibration",
    "calibrate",
    "energy_score",
    "prediction_sets",
    "softmax",
]
