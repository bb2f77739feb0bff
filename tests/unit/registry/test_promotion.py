"""Promotion follows the gate's rules: production needs floors and a win over production on
the same test split, staging the floors; --force needs a reason and is recorded."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from rxvision.config import GateConfig
from rxvision.errors import RxVisionError
from rxvision.registry import GateInput
from rxvision.registry.promotion import append_history, decide_promotion

CFG = GateConfig(min_accuracy=0.8, min_macro_f1=0.8, max_ece=0.1, min_gain=0.0, mcnemar_alpha=0.05)
GOOD = {"accuracy": 0.95, "macro_f1": 0.95, "ece": 0.03}
OK = {"accuracy": 0.85, "macro_f1": 0.85, "ece": 0.05}
BAD = {"accuracy": 0.5, "macro_f1": 0.5, "ece": 0.3}


def scored(metrics: dict, wrong: int, name: str) -> GateInput:
    correct = np.ones(200, bool)
    correct[:wrong] = False
    return GateInput(metrics=metrics, correct=correct, test_fingerprint="split-a", name=name)


def test_a_better_model_may_go_to_production():
    d = decide_promotion(
        "4", "staging", "production", scored(GOOD, 10, "v4"), scored(OK, 30, "v3"), CFG
    )
    assert d.allowed and not d.forced
    assert d.gate.stage == "production"


def test_a_model_worse_than_production_is_refused_and_says_why():
    d = decide_promotion(
        "5", "staging", "production", scored(OK, 30, "v5"), scored(GOOD, 10, "v4"), CFG
    )
    assert not d.allowed
    assert any(
        "production model" in m or "mcnemar" in m.lower() or "macro_f1" in m for m in d.messages
    ), d.messages


def test_staging_needs_only_the_floors():
    assert decide_promotion(
        "5", None, "staging", scored(OK, 30, "v5"), scored(GOOD, 10, "v4"), CFG
    ).allowed
    refused = decide_promotion("6", None, "staging", scored(BAD, 100, "v6"), None, CFG)
    assert not refused.allowed
    assert any("below the floor" in m for m in refused.messages)


def test_force_overrides_with_a_recorded_reason():
    d = decide_promotion(
        "6",
        None,
        "production",
        scored(BAD, 100, "v6"),
        scored(GOOD, 10, "v4"),
        CFG,
        force=True,
        reason="customer demo",
    )
    assert d.allowed and d.forced
    entry = d.history_entry(datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert entry["forced"] is True and entry["reason"] == "customer demo"
    assert entry["to"] == "production" and entry["from"] == "none"
    assert "min_accuracy" in entry["failed_rules"]
    assert entry["at"].startswith("2026-01-02")


def test_force_without_a_reason_is_an_error():
    with pytest.raises(RxVisionError, match="--force needs --reason"):
        decide_promotion(
            "6", None, "production", scored(BAD, 100, "v6"), None, CFG, force=True, reason="  "
        )


def test_archiving_needs_no_evaluation_but_the_same_stage_twice_is_an_error():
    assert decide_promotion("3", "production", "archived", None, None, CFG).allowed
    with pytest.raises(RxVisionError, match="already in staging"):
        decide_promotion("3", "staging", "staging", scored(OK, 30, "v3"), None, CFG)
    with pytest.raises(RxVisionError, match="unknown stage 'prod'"):
        decide_promotion("3", None, "prod", scored(OK, 30, "v3"), None, CFG)


def test_history_is_appended_and_a_malformed_one_starts_anew():
    first = {"to": "staging"}
    assert append_history([first], {"to": "production"}) == [first, {"to": "production"}]
    assert append_history("garbage", {"to": "archived"}) == [{"to": "archived"}]
