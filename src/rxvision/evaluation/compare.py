"""Paired comparison of two models on the same test samples (McNemar's test)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

from rxvision.errors import RxVisionError

# Below this many discordant pairs the chi-square approximation is poor: use the exact test.
EXACT_BELOW = 25


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the discordant pairs.

    b: samples only model A got right; c: samples only model B got right.
    exact: the binomial (exact) test was used rather than chi-square with continuity correction.
    """

    statistic: float
    p_value: float
    b: int
    c: int
    exact: bool

    @property
    def a_better(self) -> bool:
        """A has fewer errors on the discordant samples (not a significance statement)."""
        return self.b > self.c

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_correct(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise RxVisionError(
            f"{name} must be a 1-D per-sample array of correct/incorrect, got shape {arr.shape}"
        )
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise RxVisionError(f"{name} must hold booleans (or 0/1), one per test sample")
        arr = arr.astype(bool)
    return arr


def mcnemar(correct_a: Any, correct_b: Any) -> McNemarResult:
    """Is the difference between two models on the same test samples more than chance?

    Uses statsmodels; the exact binomial test when b + c < 25, else chi-square with
    continuity correction (Edwards).
    """
    a = _as_correct(correct_a, "correct_a")
    b_arr = _as_correct(correct_b, "correct_b")
    if a.shape != b_arr.shape:
        raise RxVisionError(
            "the two models were scored on different numbers of samples "
            f"({a.size} vs {b_arr.size})",
            "McNemar's test needs both models' results on the same test samples, in the same order",
        )
    if a.size == 0:
        raise RxVisionError("cannot compare models on an empty test set")
    only_a = int(np.sum(a & ~b_arr))
    only_b = int(np.sum(~a & b_arr))
    both = int(np.sum(a & b_arr))
    neither = int(np.sum(~a & ~b_arr))
    exact = (only_a + only_b) < EXACT_BELOW
    res = _sm_mcnemar([[both, only_a], [only_b, neither]], exact=exact, correction=True)
    return McNemarResult(
        statistic=float(res.statistic),
        p_value=float(min(1.0, res.pvalue)),
        b=only_a,
        c=only_b,
        exact=exact,
    )
