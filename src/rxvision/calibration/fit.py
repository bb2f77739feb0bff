"""Fitting a :class:`~rxvision.calibration.Calibration` on the calibration split's logits.

Split conformal prediction is a few lines here rather than crepes, MAPIE or TorchCP: those
libraries keep the calibration scores and compare against them at prediction time (MAPIE and
crepes through scikit-learn/pandas, TorchCP through torch), while the service must apply one
stored threshold in NumPy. The unit tests check these sets against crepes' on the same scores.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from rxvision.calibration import Calibration, _as_logits, _logsumexp, energy_score, softmax
from rxvision.errors import RxVisionError

# log-temperature search range: T in [0.05, 20]
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def _check_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise RxVisionError(f"{logits.shape[0]} logit rows but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise RxVisionError(f"labels must lie in [0, {logits.shape[1] - 1}]")
    return labels


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood (Guo et al. 2017), found
    by a bounded 1-D search over log T."""
    z = _as_logits(logits)
    y = _check_labels(z, labels)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        return float(np.mean(_logsumexp(scaled) - scaled[rows, y]))

    res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded")
    return float(math.exp(res.x))


def conformal_set_threshold(probs: np.ndarray, labels: np.ndarray, coverage: float) -> float:
    """Split conformal (score 1 - p(true label)): the probability a label needs to enter the
    set so that sets hold the true label with probability >= coverage on exchangeable data."""
    y = _check_labels(np.asarray(probs), labels)
    n = len(y)
    scores = np.sort(1.0 - np.asarray(probs)[np.arange(n), y])
    rank = math.ceil((n + 1) * coverage)  # the finite-sample corrected quantile
    if rank > n:
        return 0.0  # too few calibration images for this coverage: every label is in the set
    return float(1.0 - scores[rank - 1])


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    coverage: float,
    confidence_threshold: float,
    unknown_rate: float,
) -> Calibration:
    """Temperature, conformal threshold and OOD threshold, all from the same split.

    The OOD threshold is the (1 - unknown_rate) quantile of the calibration images' energy
    scores: about that share of in-distribution images is answered `unknown`.
    """
    z = _as_logits(logits)
    y = _check_labels(z, labels)
    if len(y) < 2:
        raise RxVisionError(
            f"calibration needs at least 2 images, the calibration split has {len(y)}",
            "raise data.split.val_fraction or add images",
        )
    temperature = fit_temperature(z, y)
    probs = softmax(z, temperature)
    energy = energy_score(z, temperature)
    return Calibration(
        temperature=temperature,
        set_threshold=conformal_set_threshold(probs, y, coverage),
        coverage=float(coverage),
        confidence_threshold=float(confidence_threshold),
        ood_threshold=float(np.quantile(energy, 1.0 - unknown_rate, method="higher")),
        unknown_rate=float(unknown_rate),
        n_calibration=len(y),
    )
