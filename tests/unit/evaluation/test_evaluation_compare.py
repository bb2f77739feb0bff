"""McNemar's test against textbook values."""

from __future__ import annotations

import numpy as np
import pytest

from rxvision.errors import RxVisionError
from rxvision.evaluation import mcnemar


def paired(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample correctness of models A and B that gives this 2x2 table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_large_table_uses_chi_square_with_continuity_correction():
    # b = 121, c = 59: chi2 = (|121 - 59| - 1)^2 / (121 + 59) = 3721 / 180 = 20.672, p ~ 5.45e-6
    a, b = paired(101, 121, 59, 33)
    res = mcnemar(a, b)
    assert (res.b, res.c, res.exact) == (121, 59, False)
    assert res.statistic == pytest.approx(3721 / 180)
    assert res.p_value == pytest.approx(5.45e-6, rel=0.01)
    assert res.a_better and res.significant(0.05)


def test_small_table_uses_the_exact_binomial_test():
    # b = 1, c = 6: p = 2 * P(X <= 1 | n = 7, 1/2) = 2 * (1 + 7) / 128 = 0.125
    a, b = paired(50, 1, 6, 3)
    res = mcnemar(a, b)
    assert res.exact and (res.b, res.c) == (1, 6)
    assert res.p_value == pytest.approx(0.125)
    assert not res.a_better and not res.significant(0.05)


def test_identical_models_are_not_different():
    a, _ = paired(30, 0, 0, 10)
    res = mcnemar(a, a)
    assert (res.b, res.c) == (0, 0)
    assert res.p_value == 1.0


def test_order_of_models_swaps_b_and_c_not_the_p_value():
    a, b = paired(40, 3, 12, 5)
    ab, ba = mcnemar(a, b), mcnemar(b, a)
    assert (ab.b, ab.c) == (ba.c, ba.b)
    assert ab.p_value == pytest.approx(ba.p_value)


def test_different_sample_counts_are_an_error():
    with pytest.raises(RxVisionError, match="different numbers of samples"):
        mcnemar(np.ones(10, bool), np.ones(9, bool))


def test_non_boolean_input_is_an_error():
    with pytest.raises(RxVisionError, match="booleans"):
        mcnemar(np.array([0.2, 0.9]), np.array([1, 0]))
