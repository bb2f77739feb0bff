"""The quality gate: which stage a freshly trained model earns.

Absolute floors (accuracy, macro-F1, calibration, better than always answering the majority
class) AND champion/challenger: the candidate
must match or beat the production model's compare metric by `min_gain` on the SAME test set,
and McNemar's test must not say it is significantly worse. Every rule is reported with its
value, threshold and outcome so a rejected model says exactly why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rxvision.config import GateConfig
from rxvision.errors import RxVisionError
from rxvision.evaluation.compare import McNemarResult, mcnemar

Stage = Literal["production", "staging"]

# rule names (stable: they appear in metadata, logs and tests)
RULE_MIN_ACCURACY = "min_accuracy"
RULE_MIN_MACRO_F1 = "min_macro_f1"
RULE_MAX_ECE = "max_ece"
RULE_SAME_TEST_SET = "same_test_set"
RULE_MIN_GAIN = "min_gain"
RULE_MCNEMAR = "mcnemar_not_worse"
RULE_NO_CHAMPION = "no_champion"
RULE_BEATS_MAJORITY = "beats_majority"
FLOOR_RULES = (RULE_MIN_ACCURACY, RULE_MIN_MACRO_F1, RULE_MAX_ECE, RULE_BEATS_MAJORITY)
# optional trust floors (off unless configured); they count as floors too
RULE_MIN_COVERAGE = "min_coverage"
RULE_MIN_CLASS_ACCURACY = "min_class_accuracy"
RULE_MIN_INVARIANCE = "min_invariance"  # one rule per transform: min_invariance_<transform>


@dataclass(frozen=True)
class GateInput:
    """One model's test-set evidence: metrics, per-sample correctness, which test set, and
    the test split's images per class (the majority-class baseline; None: rule not applied)."""

    metrics: Mapping[str, float]
    correct: np.ndarray | None
    test_fingerprint: str
    name: str = "model"
    class_support: tuple[int, ...] | None = None

    @classmethod
    def from_evaluation(cls, result: Any, test_fingerprint: str, name: str = "model") -> GateInput:
        """From an rxvision.evaluation.EvaluationResult (support = its confusion matrix's rows)."""
        confusion = getattr(result, "confusion", None)
        support = (
            tuple(int(n) for n in np.asarray(confusion).sum(axis=1))
            if confusion is not None and np.size(confusion)
            else None
        )
        return cls(
            metrics=dict(result.metrics),
            correct=np.asarray(result.correct, dtype=bool),
            test_fingerprint=test_fingerprint,
            name=name,
            class_support=support,
        )


@dataclass(frozen=True)
class RuleOutcome:
    """One rule: value vs threshold; passed is None when the rule could not be applied."""

    rule: str
    value: float | None
    threshold: float | None
    passed: bool | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "value": _json(self.value),
            "threshold": _json(self.threshold),
            "passed": self.passed,
            "message": self.message,
        }


@dataclass(frozen=True)
class GateDecision:
    """stage: "production", "staging" or None (rejected).

    comparable is False when a champion exists but was scored on another test set (or has no
    per-sample results): then needs_champion_reevaluation is True, the candidate cannot be
    promoted over it, and the caller should re-evaluate the champion on the candidate's test
    set and call `decide` again (needs_champion_reevaluation stays False for a candidate that
    failed its floors: re-scoring the champion could not change that verdict).
    """

    stage: Stage | None
    passed_floors: bool
    beats_champion: bool | None
    comparable: bool
    needs_champion_reevaluation: bool
    rules: list[RuleOutcome]
    mcnemar: McNemarResult | None = None
    champion_name: str | None = None
    candidate_name: str = "model"

    @property
    def rejected(self) -> bool:
        return self.stage is None

    @property
    def failed_rules(self) -> list[RuleOutcome]:
        return [r for r in self.rules if r.passed is False]

    @property
    def reasons(self) -> list[str]:
        """Why this stage: the failed rules first, then the verdict; human sentences."""
        out = [r.message for r in self.failed_rules]
        out += [r.message for r in self.rules if r.passed is None]
        cand, champ = self.candidate_name, self.champion_name
        if self.stage == "production" and champ is None:
            out.append(
                f"{cand} passed every floor and there is no production model yet: "
                "it becomes production."
            )
        elif self.stage == "production":
            out.append(
                f"{cand} passed every floor and beats the production model {champ}: "
                "it becomes production."
            )
        elif self.stage == "staging":
            out.append(
                f"{cand} passed every floor but did not replace the production model "
                f"{champ}: it goes to staging."
            )
        else:
            floors = [r.rule for r in self.failed_rules if _is_floor(r.rule)]
            out.append(
                f"{cand} is rejected: it failed {len(floors)} floor(s) ({', '.join(floors)})."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "passed_floors": self.passed_floors,
            "beats_champion": self.beats_champion,
            "comparable": self.comparable,
            "needs_champion_reevaluation": self.needs_champion_reevaluation,
            "candidate": self.candidate_name,
            "champion": self.champion_name,
            "rules": [r.to_dict() for r in self.rules],
            "mcnemar": self.mcnemar.to_dict() if self.mcnemar else None,
            "reasons": self.reasons,
        }

    def summary(self) -> str:
        """A few lines for the pipeline's final summary."""
        head = f"quality gate: {self.stage or 'rejected'}"
        lines = [head] + [f"  [{_mark(r.passed)}] {r.message}" for r in self.rules]
        return "\n".join(lines)


def _is_floor(rule: str) -> bool:
    return (
        rule in FLOOR_RULES
        or rule in (RULE_MIN_COVERAGE, RULE_MIN_CLASS_ACCURACY)
        or (rule.startswith(RULE_MIN_INVARIANCE + "_"))
    )


def trust_floors(candidate: GateInput, cfg: GateConfig) -> list[RuleOutcome]:
    """The optional floors on prediction-set coverage, invariance and per-class accuracy."""
    rules = []
    if cfg.coverage_tolerance is not None:
        target = _metric(candidate, "coverage_target", "candidate")
        rules.append(
            _floor(
                RULE_MIN_COVERAGE,
                "coverage",
                _metric(candidate, "coverage", "candidate"),
                target - cfg.coverage_tolerance,
                upper=False,
            )
        )
    for transform, floor in sorted(cfg.min_invariance.items()):
        key = f"invariance_{transform}"
        rules.append(
            _floor(
                f"{RULE_MIN_INVARIANCE}_{transform}",
                key,
                _metric(candidate, key, "candidate"),
                floor,
                upper=False,
            )
        )
    if cfg.min_class_accuracy is not None:
        rules.append(
            _floor(
                RULE_MIN_CLASS_ACCURACY,
                "worst_class_accuracy",
                _metric(candidate, "worst_class_accuracy", "candidate"),
                cfg.min_class_accuracy,
                upper=False,
            )
        )
    return rules


def _mark(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "n/a "}[passed]


def _json(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _metric(inp: GateInput, key: str, role: str) -> float:
    if key not in inp.metrics:
        raise RxVisionError(
            f"the {role} {inp.name} has no '{key}' metric "
            f"(has: {', '.join(sorted(inp.metrics)) or 'none'})",
            "evaluate it with rxvision.evaluation.evaluate, "
            "which reports every metric the gate reads",
        )
    value = inp.metrics[key]
    return math.nan if value is None else float(value)


def _floor(rule: str, metric: str, value: float, threshold: float, upper: bool) -> RuleOutcome:
    # NaN fails every floor (comparisons with NaN are False)
    ok = value <= threshold if upper else value >= threshold
    if ok:
        rel = "<=" if upper else ">="
        msg = f"{metric} {value:.4f} {rel} {rule} {threshold:.4f}"
    else:
        word = "above the ceiling" if upper else "below the floor"
        msg = f"{metric} {value:.4f} is {word} {rule}={threshold:.4f}"
    return RuleOutcome(rule, value, threshold, bool(ok), msg)


def majority_baseline(class_support: tuple[int, ...] | list[int]) -> dict[str, float]:
    """Accuracy and macro-F1 of always answering the largest class on a test split with these
    images per class. Macro-F1 averages over the classes present, as the evaluation does: the
    majority class scores 2p/(1+p) (p its share), every other class 0."""
    support = np.asarray(class_support, dtype=np.int64)
    total, present = int(support.sum()), int((support > 0).sum())
    if total == 0:
        return {"accuracy": math.nan, "macro_f1": math.nan}
    share = support.max() / total
    return {"accuracy": float(share), "macro_f1": float(2 * share / (1 + share) / present)}


def _beats_majority(candidate: GateInput, margin: float) -> RuleOutcome:
    if candidate.class_support is None:
        return RuleOutcome(
            RULE_BEATS_MAJORITY,
            None,
            None,
            None,
            "no per-class test support: the majority-class baseline was not checked",
        )
    base = majority_baseline(candidate.class_support)
    acc = _metric(candidate, "accuracy", "candidate")
    f1 = _metric(candidate, "macro_f1", "candidate")
    ok = acc > base["accuracy"] + margin and f1 > base["macro_f1"] + margin
    text = (
        f"accuracy {acc:.4f} / macro_f1 {f1:.4f} vs always answering the largest class "
        f"{base['accuracy']:.4f} / {base['macro_f1']:.4f}"
        + (f" (+ majority_margin {margin:.4f})" if margin else "")
    )
    if not ok:
        text += ": no better than the majority class"
    return RuleOutcome(RULE_BEATS_MAJORITY, acc, base["accuracy"] + margin, bool(ok), text)


def decide(candidate: GateInput, champion: GateInput | None, cfg: GateConfig) -> GateDecision:
    """Apply the floors, then (if a comparable champion exists) challenger vs champion."""
    rules = [
        _floor(
            RULE_MIN_ACCURACY,
            "accuracy",
            _metric(candidate, "accuracy", "candidate"),
            cfg.min_accuracy,
            upper=False,
        ),
        _floor(
            RULE_MIN_MACRO_F1,
            "macro_f1",
            _metric(candidate, "macro_f1", "candidate"),
            cfg.min_macro_f1,
            upper=False,
        ),
        _floor(
            RULE_MAX_ECE, "ece", _metric(candidate, "ece", "candidate"), cfg.max_ece, upper=True
        ),
        _beats_majority(candidate, cfg.majority_margin),
    ]
    rules += trust_floors(candidate, cfg)
    # a rule that could not be applied (passed None) does not block
    passed_floors = all(r.passed is not False for r in rules)
    common = {
        "candidate_name": candidate.name,
        "champion_name": champion.name if champion else None,
    }

    if champion is None:
        rules.append(
            RuleOutcome(
                RULE_NO_CHAMPION, None, None, True, "there is no production model to compare with"
            )
        )
        return GateDecision(
            stage="production" if passed_floors else None,
            passed_floors=passed_floors,
            beats_champion=None,
            comparable=True,
            needs_champion_reevaluation=False,
            rules=rules,
            **common,
        )

    comparable, problem = _comparable(candidate, champion)
    rules.append(
        RuleOutcome(
            RULE_SAME_TEST_SET,
            None,
            None,
            comparable,
            problem
            or (
                f"{candidate.name} and the production model {champion.name} were scored on "
                f"the same test set ({candidate.test_fingerprint[:12]})"
            ),
        )
    )
    if not comparable:
        return GateDecision(
            stage="staging" if passed_floors else None,
            passed_floors=passed_floors,
            beats_champion=None,
            comparable=False,
            # only worth doing when the candidate could be promoted at all
            needs_champion_reevaluation=passed_floors,
            rules=rules,
            **common,
        )

    metric = cfg.compare_metric
    cand_v, champ_v = _metric(candidate, metric, "candidate"), _metric(champion, metric, "champion")
    needed = champ_v + cfg.min_gain
    gain_ok = cand_v >= needed
    gain = cand_v - champ_v
    rules.append(
        RuleOutcome(
            RULE_MIN_GAIN,
            cand_v,
            needed,
            bool(gain_ok),
            (
                f"{metric} {cand_v:.4f} vs production {champ_v:.4f}: gain {gain:+.4f} "
                + (
                    f">= min_gain {cfg.min_gain:.4f}"
                    if gain_ok
                    else f"is less than min_gain {cfg.min_gain:.4f}"
                )
            ),
        )
    )

    # b: only the candidate right; c: only the champion right (candidate-only errors)
    test = mcnemar(candidate.correct, champion.correct)
    worse = test.significant(cfg.mcnemar_alpha) and test.c > test.b
    rules.append(
        RuleOutcome(
            RULE_MCNEMAR,
            test.p_value,
            cfg.mcnemar_alpha,
            not worse,
            (
                f"McNemar p={test.p_value:.4g} ({'exact' if test.exact else 'chi-square'}): "
                f"{test.c} samples only the production model got right, "
                f"{test.b} only {candidate.name} got right; "
                + (
                    f"significantly worse at mcnemar_alpha={cfg.mcnemar_alpha}"
                    if worse
                    else f"not significantly worse at mcnemar_alpha={cfg.mcnemar_alpha}"
                )
            ),
        )
    )

    beats = bool(gain_ok and not worse)
    stage: Stage | None = None
    if passed_floors:
        stage = "production" if beats else "staging"
    return GateDecision(
        stage=stage,
        passed_floors=passed_floors,
        beats_champion=beats,
        comparable=True,
        needs_champion_reevaluation=False,
        rules=rules,
        mcnemar=test,
        **common,
    )


def _comparable(candidate: GateInput, champion: GateInput) -> tuple[bool, str | None]:
    if candidate.test_fingerprint != champion.test_fingerprint:
        return False, (
            f"the production model {champion.name} was scored on test set "
            f"{champion.test_fingerprint[:12]}, "
            f"{candidate.name} on {candidate.test_fingerprint[:12]}: "
            "the comparison is not valid; re-evaluate the production model on the candidate's "
            "test set and decide again (until then the candidate cannot replace it)"
        )
    if champion.correct is None or candidate.correct is None:
        who = champion.name if champion.correct is None else candidate.name
        return False, (
            f"{who} has no per-sample results for McNemar's test; re-evaluate it on the test set "
            f"{candidate.test_fingerprint[:12]} and decide again"
        )
    if np.asarray(champion.correct).shape != np.asarray(candidate.correct).shape:
        raise RxVisionError(
            f"{candidate.name} and {champion.name} claim the same test set "
            f"({candidate.test_fingerprint[:12]}) but have {np.size(candidate.correct)} vs "
            f"{np.size(champion.correct)} per-sample results",
            "re-evaluate both models on that test set",
        )
    return True, None
