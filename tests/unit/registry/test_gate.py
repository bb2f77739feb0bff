"""Every path of the quality gate: floors, champion/challenger, first model, other test set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rxvision.config import EvaluationConfig, GateConfig
from rxvision.errors import RxVisionError
from rxvision.evaluation import evaluate
from rxvision.registry import GateInput, decide, majority_baseline

CFG = GateConfig(min_accuracy=0.8, min_macro_f1=0.8, max_ece=0.1, min_gain=0.0, mcnemar_alpha=0.05)
GOOD = {"accuracy": 0.92, "macro_f1": 0.91, "ece": 0.03}


def model(
    metrics: dict, correct: np.ndarray | None = None, fp: str = "testset-a", name: str = "cand"
) -> GateInput:
    if correct is None:
        correct = np.ones(100, bool)
    return GateInput(metrics=metrics, correct=correct, test_fingerprint=fp, name=name)


def correct_with_errors(n: int, wrong: list[int]) -> np.ndarray:
    c = np.ones(n, bool)
    c[wrong] = False
    return c


def rule(decision, name):
    return next(r for r in decision.rules if r.rule == name)


def test_first_model_that_passes_the_floors_becomes_production():
    d = decide(model(GOOD), None, CFG)
    assert d.stage == "production" and d.passed_floors and d.beats_champion is None
    assert rule(d, "no_champion").passed is True
    assert "no production model yet" in d.reasons[-1]


@pytest.mark.parametrize(
    ("metric", "value", "rule_name", "words"),
    [
        (
            "accuracy",
            0.75,
            "min_accuracy",
            "accuracy 0.7500 is below the floor min_accuracy=0.8000",
        ),
        ("macro_f1", 0.6, "min_macro_f1", "macro_f1 0.6000 is below the floor min_macro_f1=0.8000"),
        ("ece", 0.25, "max_ece", "ece 0.2500 is above the ceiling max_ece=0.1000"),
    ],
)
def test_each_floor_rejects_and_names_itself(metric, value, rule_name, words):
    d = decide(model({**GOOD, metric: value}), None, CFG)
    assert d.stage is None and d.rejected and not d.passed_floors
    failed = d.failed_rules
    assert [r.rule for r in failed] == [rule_name]
    assert failed[0].value == value and failed[0].threshold == getattr(CFG, rule_name)
    assert d.reasons[0] == words
    assert d.reasons[-1] == f"cand is rejected: it failed 1 floor(s) ({rule_name})."


def test_floors_reject_even_a_model_that_beats_the_champion():
    champ = model({**GOOD, "macro_f1": 0.5}, name="v1")
    d = decide(model({**GOOD, "accuracy": 0.5}), champ, CFG)
    assert d.stage is None and d.beats_champion is True


def test_rejection_counts_only_floors_not_the_champion_rules():
    champ = model({**GOOD, "macro_f1": 0.99}, name="v1")
    d = decide(model({**GOOD, "accuracy": 0.5, "ece": 0.3}), champ, CFG)
    assert {r.rule for r in d.failed_rules} == {"min_accuracy", "max_ece", "min_gain"}
    assert d.reasons[-1] == "cand is rejected: it failed 2 floor(s) (min_accuracy, max_ece)."


def test_nan_metric_fails_its_floor():
    d = decide(model({**GOOD, "ece": float("nan")}), None, CFG)
    assert d.stage is None and rule(d, "max_ece").passed is False


def test_better_candidate_replaces_the_champion():
    champ = model({**GOOD, "macro_f1": 0.85}, correct_with_errors(200, list(range(20))), name="v1")
    cand = model({**GOOD, "macro_f1": 0.93}, correct_with_errors(200, list(range(5))), name="v2")
    d = decide(cand, champ, CFG)
    assert d.stage == "production" and d.beats_champion is True and d.comparable
    assert rule(d, "min_gain").passed and rule(d, "mcnemar_not_worse").passed
    assert d.mcnemar.b == 15 and d.mcnemar.c == 0
    assert "beats the production model v1" in d.reasons[-1]


def test_candidate_below_the_champion_goes_to_staging():
    champ = model({**GOOD, "macro_f1": 0.95}, name="v1")
    d = decide(model(GOOD, name="v2"), champ, CFG)
    assert d.stage == "staging" and d.passed_floors and d.beats_champion is False
    gain = rule(d, "min_gain")
    assert gain.passed is False and gain.value == 0.91 and gain.threshold == pytest.approx(0.95)
    assert "gain -0.0400 is less than min_gain 0.0000" in d.reasons[0]
    assert "staging" in d.reasons[-1]


def test_min_gain_is_required_on_top_of_the_champion():
    cfg = CFG.model_copy(update={"min_gain": 0.02})
    champ = model({**GOOD, "macro_f1": 0.90}, name="v1")
    assert decide(model({**GOOD, "macro_f1": 0.91}), champ, cfg).stage == "staging"
    assert decide(model({**GOOD, "macro_f1": 0.93}), champ, cfg).stage == "production"


def test_compare_metric_can_be_accuracy():
    cfg = CFG.model_copy(update={"compare_metric": "accuracy"})
    champ = model({**GOOD, "accuracy": 0.95, "macro_f1": 0.5}, name="v1")
    d = decide(model(GOOD), champ, cfg)
    assert d.stage == "staging" and "accuracy 0.9200 vs production 0.9500" in d.reasons[0]


def test_mcnemar_blocks_a_candidate_that_is_significantly_worse_despite_the_metric():
    # candidate's macro_f1 claims a gain, but on the same samples it makes 12 errors the
    # champion does not, and fixes none: exact p = 2 / 2^12 < 0.05
    champ = model(GOOD, correct_with_errors(100, []), name="v1")
    cand = model({**GOOD, "macro_f1": 0.95}, correct_with_errors(100, list(range(12))), name="v2")
    d = decide(cand, champ, CFG)
    assert d.stage == "staging" and d.beats_champion is False
    mc = rule(d, "mcnemar_not_worse")
    assert mc.passed is False and mc.value < 0.05 and mc.threshold == 0.05
    assert "12 samples only the production model got right, 0 only v2 got right" in mc.message
    assert "significantly worse" in d.reasons[0]


def test_mcnemar_does_not_block_a_non_significant_difference():
    champ = model(GOOD, correct_with_errors(100, [0]), name="v1")
    cand = model({**GOOD, "macro_f1": 0.92}, correct_with_errors(100, [1, 2]), name="v2")
    d = decide(cand, champ, CFG)
    assert d.stage == "production" and rule(d, "mcnemar_not_worse").passed


def test_champion_scored_on_another_test_set_is_not_comparable():
    champ = model({**GOOD, "macro_f1": 0.5}, fp="testset-old", name="v1")
    d = decide(model(GOOD, fp="testset-new"), champ, CFG)
    assert d.comparable is False and d.needs_champion_reevaluation is True
    assert d.stage == "staging" and d.beats_champion is None
    same = rule(d, "same_test_set")
    assert same.passed is False
    assert "re-evaluate the production model on the candidate's test set" in same.message
    assert not any(r.rule in ("min_gain", "mcnemar_not_worse") for r in d.rules)


def test_rejected_candidate_does_not_ask_for_champion_reevaluation():
    champ = model(GOOD, fp="testset-old", name="v1")
    d = decide(model({**GOOD, "accuracy": 0.1}, fp="testset-new"), champ, CFG)
    assert d.stage is None and d.comparable is False and d.needs_champion_reevaluation is False


def test_champion_without_per_sample_results_must_be_reevaluated():
    champ = GateInput(metrics=GOOD, correct=None, test_fingerprint="testset-a", name="v1")
    d = decide(model(GOOD), champ, CFG)
    assert d.needs_champion_reevaluation and d.stage == "staging"
    assert "no per-sample results" in rule(d, "same_test_set").message


def test_same_fingerprint_but_different_sample_counts_is_an_error():
    champ = model(GOOD, np.ones(90, bool), name="v1")
    with pytest.raises(RxVisionError, match="100 vs 90 per-sample results"):
        decide(model(GOOD), champ, CFG)


def test_missing_metric_is_an_error_naming_it():
    with pytest.raises(RxVisionError, match="has no 'ece' metric"):
        decide(model({"accuracy": 0.9, "macro_f1": 0.9}), None, CFG)


def test_decision_serialises_to_json_with_every_rule():
    champ = model({**GOOD, "macro_f1": 0.85}, name="v1")
    d = decide(model(GOOD), champ, CFG)
    data = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert data["stage"] == "production"
    assert [r["rule"] for r in data["rules"]] == [
        "min_accuracy",
        "min_macro_f1",
        "max_ece",
        "beats_majority",
        "same_test_set",
        "min_gain",
        "mcnemar_not_worse",
    ]
    assert all({"value", "threshold", "passed", "message"} <= set(r) for r in data["rules"])
    assert "quality gate: production" in d.summary()


def test_gate_input_from_a_real_evaluation():
    labels = np.arange(60) % 3
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), labels] = 0.9
    res = evaluate(probs, labels, ["a", "b", "c"], EvaluationConfig(bootstrap_samples=0))
    cand = GateInput.from_evaluation(res, test_fingerprint="fp", name="v1")
    d = decide(cand, None, GateConfig(max_ece=0.15))
    assert d.stage == "production"
    assert rule(d, "max_ece").value == pytest.approx(0.1)


def test_majority_baseline_of_a_six_to_one_split():
    base = majority_baseline((60, 10))
    assert base["accuracy"] == pytest.approx(60 / 70)
    # F1 of the majority class is 2p/(1+p); the minority class scores 0; mean over 2 classes
    assert base["macro_f1"] == pytest.approx((2 * (6 / 7) / (1 + 6 / 7)) / 2)


def test_model_that_always_answers_the_majority_class_is_rejected():
    # 14:1 graded set: a model predicting only the largest class meets a low accuracy floor
    labels = np.array([0] * 70 + [1] * 5 + [2] * 5)
    probs = np.full((80, 3), 0.1)
    probs[:, 0] = 0.8
    res = evaluate(probs, labels, ["ok", "minor", "major"], EvaluationConfig(bootstrap_samples=0))
    lenient = GateConfig(min_accuracy=0.5, min_macro_f1=0.0, max_ece=1.0)
    d = decide(GateInput.from_evaluation(res, "fp", name="v1"), None, lenient)
    assert d.stage is None and not d.passed_floors
    outcome = rule(d, "beats_majority")
    assert outcome.passed is False and "no better than the majority class" in outcome.message
    assert rule(d, "min_accuracy").passed is True  # the floor alone would have let it through
    assert "beats_majority" in d.reasons[-1]


def test_model_better_than_the_majority_class_passes_that_rule():
    labels = np.array([0] * 70 + [1] * 10)
    probs = np.full((80, 2), 0.1)
    probs[np.arange(80), labels] = 0.9
    probs[:3] = [0.1, 0.9]  # three mistakes on the large class
    res = evaluate(probs, labels, ["ok", "defect"], EvaluationConfig(bootstrap_samples=0))
    d = decide(
        GateInput.from_evaluation(res, "fp"),
        None,
        GateConfig(min_accuracy=0.5, min_macro_f1=0.5, max_ece=1.0),
    )
    assert rule(d, "beats_majority").passed is True and d.stage == "production"


def test_majority_margin_raises_the_bar():
    labels = np.array([0] * 70 + [1] * 10)
    probs = np.full((80, 2), 0.1)
    probs[np.arange(80), labels] = 0.9
    probs[70:76] = [0.9, 0.1]  # 6 of 10 minority images missed: accuracy 0.925 vs base 0.875
    res = evaluate(probs, labels, ["ok", "defect"], EvaluationConfig(bootstrap_samples=0))
    cand = GateInput.from_evaluation(res, "fp")
    loose = GateConfig(min_accuracy=0.5, min_macro_f1=0.5, max_ece=1.0)
    assert rule(decide(cand, None, loose), "beats_majority").passed is True
    strict = loose.model_copy(update={"majority_margin": 0.1})
    assert rule(decide(cand, None, strict), "beats_majority").passed is False


def test_without_class_support_the_majority_rule_is_not_applied():
    d = decide(model(GOOD), None, CFG)
    assert rule(d, "beats_majority").passed is None and d.stage == "production"
