"""Metrics agree with sklearn and with hand-computed values; ECE, bootstrap and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from rxvision.config import EvaluationConfig
from rxvision.errors import RxVisionError
from rxvision.evaluation import evaluate, expected_calibration_error
from rxvision.evaluation.metrics import EvaluationResult, _accuracy_and_macro_f1

EXPECTED_KEYS = {
    "accuracy",
    "top3_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "ece",
    "log_loss",
    "n_samples",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "macro_f1_ci_low",
    "macro_f1_ci_high",
}


def one_hot_probs(preds: list[int], num_classes: int, confidence: float = 0.9) -> np.ndarray:
    """Rows with `confidence` on the predicted class and the rest spread evenly."""
    p = np.full((len(preds), num_classes), (1 - confidence) / (num_classes - 1))
    p[np.arange(len(preds)), preds] = confidence
    return p


def noisy_probs(labels: np.ndarray, num_classes: int, signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += signal
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def test_metric_names_are_exactly_the_project_names():
    labels = np.array([0, 1, 2, 3, 0, 1])
    res = evaluate(one_hot_probs([0, 1, 2, 3, 1, 1], 4), labels, list("abcd"), EvaluationConfig())
    assert set(res.metrics) == EXPECTED_KEYS
    res5 = evaluate(
        one_hot_probs([0, 1, 2, 3, 1, 1], 6), labels, list("abcdef"), EvaluationConfig(top_k=5)
    )
    assert "top5_accuracy" in res5.metrics and "top3_accuracy" not in res5.metrics


def test_hand_computed_small_case():
    # truth 0 0 1 1 2 2, predicted 0 1 1 1 2 0:
    # class 0: P=1/2 R=1/2 F1=1/2; class 1: P=2/3 R=1 F1=4/5; class 2: P=1 R=1/2 F1=2/3
    labels = np.array([0, 0, 1, 1, 2, 2])
    res = evaluate(
        one_hot_probs([0, 1, 1, 1, 2, 0], 3), labels, ["a", "b", "c"], EvaluationConfig()
    )
    m = res.metrics
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert m["n_samples"] == 6
    assert [r["f1"] for r in res.per_class] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    assert [r["support"] for r in res.per_class] == [2, 2, 2]
    assert res.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert res.correct.tolist() == [True, False, True, True, True, False]


def test_metrics_agree_with_sklearn_on_random_predictions():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, size=400)
    probs = noisy_probs(labels, 7, signal=1.5, seed=4)
    preds = probs.argmax(axis=1)
    m = evaluate(probs, labels, [f"c{i}" for i in range(7)], EvaluationConfig()).metrics
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average=avg, zero_division=0)
        assert m[f"{avg}_precision"] == pytest.approx(p)
        assert m[f"{avg}_recall"] == pytest.approx(r)
        assert m[f"{avg}_f1"] == pytest.approx(f)
    expected_ll = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    assert m["log_loss"] == pytest.approx(expected_ll, rel=1e-6)


def test_top_k_counts_the_true_class_among_the_k_most_likely():
    # sample 0: true class ranked 1st; sample 1: 2nd; sample 2: 3rd; sample 3: 4th
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.5, 0.3, 0.15, 0.05],
            [0.4, 0.3, 0.2, 0.1],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    labels = np.array([0, 1, 2, 3])
    classes = list("abcd")
    assert (
        evaluate(probs, labels, classes, EvaluationConfig(top_k=1)).metrics["top1_accuracy"] == 0.25
    )
    assert (
        evaluate(probs, labels, classes, EvaluationConfig(top_k=2)).metrics["top2_accuracy"] == 0.5
    )
    assert (
        evaluate(probs, labels, classes, EvaluationConfig(top_k=3)).metrics["top3_accuracy"] == 0.75
    )
    # k as large as the class count: every true class is included
    assert (
        evaluate(probs, labels, classes, EvaluationConfig(top_k=4)).metrics["top4_accuracy"] == 1.0
    )


def test_two_classes_are_evaluated():
    labels = np.array([0, 1, 1, 0])
    res = evaluate(one_hot_probs([0, 1, 0, 0], 2), labels, ["x", "y"], EvaluationConfig(top_k=1))
    assert res.metrics["top1_accuracy"] == res.metrics["accuracy"] == 0.75


def test_ece_is_zero_for_perfect_calibration():
    # confidence 0.8 on class 0 everywhere, and exactly 80% of the labels are class 0
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_model_has_the_known_value():
    # bin of conf 0.9: 6 samples, 3 right (gap 0.4); bin of conf 0.6: 4 samples, 2 right (gap 0.1)
    # ECE = (6 * 0.4 + 4 * 0.1) / 10 = 0.28
    probs = np.array([[0.9, 0.05, 0.05]] * 6 + [[0.6, 0.3, 0.1]] * 4)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 0, 2, 2])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.28)
    res = evaluate(probs, labels, ["a", "b", "c"], EvaluationConfig(calibration_bins=10))
    assert res.metrics["ece"] == pytest.approx(0.28)
    assert sum(res.calibration.count) == 10
    assert res.calibration.accuracy[8] == pytest.approx(0.5)  # bin (0.8, 0.9]
    assert res.calibration.accuracy[5] == pytest.approx(0.5)  # bin (0.5, 0.6]


def test_bootstrap_interval_contains_the_point_estimate_and_narrows_with_n():
    cfg = EvaluationConfig(bootstrap_samples=500, seed=1)
    widths = {}
    for n in (100, 2000):
        labels = np.arange(n) % 5
        res = evaluate(noisy_probs(labels, 5, signal=2.0, seed=n), labels, list("abcde"), cfg)
        m = res.metrics
        assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
        assert m["macro_f1_ci_low"] <= m["macro_f1"] <= m["macro_f1_ci_high"]
        assert m["accuracy_ci_low"] < m["accuracy_ci_high"]
        widths[n] = (
            m["accuracy_ci_high"] - m["accuracy_ci_low"],
            m["macro_f1_ci_high"] - m["macro_f1_ci_low"],
        )
    # width shrinks like 1/sqrt(n): sqrt(20) ~ 4.5x narrower; require at least 2x
    assert widths[2000][0] < widths[100][0] / 2
    assert widths[2000][1] < widths[100][1] / 2


def test_bootstrap_is_reproducible_with_the_seed():
    labels = np.arange(300) % 4
    probs = noisy_probs(labels, 4, signal=1.0, seed=0)
    a = evaluate(probs, labels, list("abcd"), EvaluationConfig(seed=7)).metrics
    b = evaluate(probs, labels, list("abcd"), EvaluationConfig(seed=7)).metrics
    c = evaluate(probs, labels, list("abcd"), EvaluationConfig(seed=8)).metrics
    assert (
        a["accuracy_ci_low"] == b["accuracy_ci_low"]
        and a["macro_f1_ci_high"] == b["macro_f1_ci_high"]
    )
    assert (a["accuracy_ci_low"], a["macro_f1_ci_low"]) != (
        c["accuracy_ci_low"],
        c["macro_f1_ci_low"],
    )


def test_vectorised_resample_statistic_matches_sklearn_per_resample():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=150)
    preds = np.where(rng.random(150) < 0.7, labels, rng.integers(0, 6, size=150))
    idx = rng.integers(0, 150, size=(20, 150))
    stat = _accuracy_and_macro_f1(labels[idx], preds[idx], 6)
    for row in range(20):
        y, p = labels[idx[row]], preds[idx[row]]
        assert stat[0, row] == pytest.approx(np.mean(y == p))
        assert stat[1, row] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_disabled_bootstrap_gives_nan_intervals_and_json_nulls():
    labels = np.array([0, 1, 2, 0])
    res = evaluate(
        one_hot_probs([0, 1, 2, 1], 3), labels, list("abc"), EvaluationConfig(bootstrap_samples=0)
    )
    assert np.isnan(res.metrics["accuracy_ci_low"])
    d = res.to_dict()
    assert d["metrics"]["accuracy_ci_low"] is None
    json.dumps(d, allow_nan=False)


def test_classes_absent_from_the_test_set_do_not_sink_macro_f1():
    # 5 classes, the test set only has 0..2 and the model is perfect on them
    labels = np.array([0, 0, 1, 1, 2, 2])
    res = evaluate(one_hot_probs(labels.tolist(), 5), labels, list("abcde"), EvaluationConfig())
    assert res.metrics["macro_f1"] == 1.0
    assert res.metrics["accuracy"] == 1.0
    assert res.confusion.shape == (5, 5)
    assert [r["support"] for r in res.per_class] == [2, 2, 2, 0, 0]
    assert res.absent_classes == ["d", "e"]
    assert res.metrics["macro_f1_ci_low"] == res.metrics["macro_f1_ci_high"] == 1.0


def test_predicting_a_class_absent_from_the_test_set_counts_against_the_model():
    # class 3 never occurs but is predicted once: it enters the macro average with F1 = 0,
    # as sklearn's default label set does
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = [0, 0, 1, 1, 2, 3]
    res = evaluate(one_hot_probs(preds, 4), labels, list("abcd"), EvaluationConfig())
    assert res.metrics["macro_f1"] == pytest.approx(
        f1_score(labels, preds, average="macro", zero_division=0)
    )
    assert res.metrics["macro_f1"] < 1.0


def test_result_round_trips_through_json():
    labels = np.arange(40) % 4
    res = evaluate(noisy_probs(labels, 4, 2.0, seed=2), labels, list("abcd"), EvaluationConfig())
    back = EvaluationResult.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=False)))
    assert back.metrics == pytest.approx(res.metrics)
    assert back.correct.tolist() == res.correct.tolist()
    assert np.array_equal(back.confusion, res.confusion)
    assert back.worst_confusions() == res.worst_confusions()


def test_worst_confusions_lists_the_largest_off_diagonal_cells_first():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    preds = [1, 1, 0, 1, 1, 0, 2, 2]
    worst = evaluate(
        one_hot_probs(preds, 3), labels, list("abc"), EvaluationConfig()
    ).worst_confusions()
    assert worst[0] == {
        "true": "a",
        "predicted": "b",
        "count": 2,
        "share_of_true": pytest.approx(2 / 3),
    }
    assert worst[1]["true"] == "c" and worst[1]["predicted"] == "a" and worst[1]["count"] == 1
    assert len(worst) == 2


@pytest.mark.parametrize(
    ("probs", "labels", "classes", "words"),
    [
        (np.full((4, 3), 1 / 3), np.array([0, 1, 2]), "abc", "4 probability rows but 3 labels"),
        (np.full((3, 3), 1 / 3), np.array([0, 1, 2]), "abcd", "3 columns but there are 4 classes"),
        (np.full((3, 3), 1 / 3), np.array([0, 1, 5]), "abc", "labels must lie in [0, 2]"),
        (np.array([[2.0, -1.0, 0.5]] * 3), np.array([0, 1, 2]), "abc", "apply softmax"),
        (np.full((0, 3), 1 / 3), np.zeros(0, dtype=int), "abc", "test set is empty"),
        (np.full(3, 1 / 3), np.array([0, 1, 2]), "abc", "2-D array"),
        (np.array([[np.nan, 0.5, 0.5]] * 3), np.array([0, 1, 2]), "abc", "NaN"),
    ],
)
def test_bad_inputs_raise_a_clear_error(probs, labels, classes, words):
    with pytest.raises(RxVisionError, match=None) as info:
        evaluate(probs, labels, list(classes), EvaluationConfig())
    assert words in str(info.value)


def test_macro_f1_is_the_evaluations_and_skips_classes_absent_from_truth_and_predictions():
    # the training loop's val_macro_f1 calls this same function: one meaning for both keys
    from rxvision.evaluation.metrics import macro_f1

    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    res = evaluate(one_hot_probs(preds.tolist(), 5), labels, list("abcde"), EvaluationConfig())
    assert macro_f1(labels, preds, 5) == pytest.approx(res.metrics["macro_f1"])
    assert macro_f1(labels, preds, 5) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert macro_f1(labels, labels, 5) == 1.0  # classes 3 and 4 occur nowhere: not counted
    assert macro_f1(labels, np.array([0, 0, 1, 1, 2, 3]), 5) == pytest.approx(
        f1_score(labels, [0, 0, 1, 1, 2, 3], average="macro", zero_division=0)
    )
    assert macro_f1(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 5) == 0.0
