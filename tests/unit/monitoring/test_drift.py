"""Drift decisions on simulated traffic: shifted streams are flagged, in-distribution streams
are not (over several seeds), and too little traffic is its own outcome."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rxvision.config import MonitoringConfig
from rxvision.errors import RxVisionError
from rxvision.monitoring import EmbeddingProjector, feature_table
from rxvision.monitoring.drift import detect_drift
from tests.support.simulate import encoded_size, traffic

CLASSES = ["a", "b", "c", "d"]


def _fake_model(
    images: list[np.ndarray], seed: int, unseen: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in classifier: stable class mix and confident on known pills; an unseen kind
    is pushed to one class with low confidence and lands elsewhere in embedding space."""
    rng = np.random.default_rng(seed)
    n = len(images)
    logits = rng.normal(0, 1, size=(n, len(CLASSES)))
    logits[np.arange(n), rng.integers(len(CLASSES), size=n)] += 5.0
    emb = rng.normal(0, 1, size=(n, 24))
    if unseen:
        logits = rng.normal(0, 0.5, size=(n, len(CLASSES)))
        logits[:, 0] += 1.0
        emb[:, :6] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, emb


def _table(
    n: int,
    seed: int,
    shift: str = "none",
    projector: EmbeddingProjector | None = None,
    unseen_model: bool = False,
) -> pd.DataFrame:
    images = traffic(n, seed, shift)  # type: ignore[arg-type]
    probs, emb = _fake_model(images, seed + 1000, unseen=unseen_model)
    return feature_table(images, [encoded_size(i) for i in images], probs, CLASSES, emb, projector)


@pytest.fixture(scope="module")
def projector() -> EmbeddingProjector:
    _, emb = _fake_model(traffic(200, 0), seed=7)
    return EmbeddingProjector.fit(emb, n_components=4)


@pytest.fixture(scope="module")
def reference(projector) -> pd.DataFrame:
    return _table(300, seed=0, projector=projector)


CFG = MonitoringConfig(min_rows=50)


@pytest.mark.parametrize("seed", [11, pytest.param(12, marks=pytest.mark.slow)])
def test_darker_and_blurred_stream_is_flagged(reference, projector, seed):
    result = detect_drift(
        reference, _table(120, seed, "dark_blur", projector), CFG, with_html=False
    )
    assert result.outcome == "drift" and result.drifted
    assert {"brightness", "sharpness"} <= set(result.drifted_columns)
    assert result.share >= CFG.drift_share


def test_blur_alone_is_flagged_through_sharpness(reference, projector):
    result = detect_drift(reference, _table(120, 13, "blur", projector), CFG, with_html=False)
    assert result.drifted and "sharpness" in result.drifted_columns
    assert "brightness" not in result.drifted_columns


@pytest.mark.parametrize(
    "seed", [21, *(pytest.param(s, marks=pytest.mark.slow) for s in (22, 23, 24, 25))]
)
def test_in_distribution_stream_is_not_flagged(reference, projector, seed):
    result = detect_drift(reference, _table(120, seed, "none", projector), CFG, with_html=False)
    assert result.outcome == "no_drift" and not result.drifted, result.reason
    assert result.share < CFG.drift_share


def test_unseen_pill_with_ordinary_pixels_is_flagged_through_embedding_and_predictions(
    reference, projector
):
    # the pixels are in-distribution; only the model's view (embedding, class mix, confidence) moves
    current = _table(120, 31, "none", projector, unseen_model=True)
    result = detect_drift(reference, current, CFG, with_html=False)
    assert result.drifted
    assert not {"brightness", "contrast", "sharpness"} & set(result.drifted_columns)
    assert any(c.startswith("emb_") for c in result.drifted_columns)
    assert result.prediction_drift and "predicted-class mix" in result.reason
    assert result.confidence_drop is not None and result.confidence_drop > CFG.max_confidence_drop


def test_new_pill_type_is_flagged(reference, projector):
    result = detect_drift(reference, _table(120, 41, "new_pill", projector), CFG, with_html=False)
    assert result.drifted and {"colourfulness", "saturation"} & set(result.drifted_columns)


def test_too_little_traffic_is_not_enough_data_not_an_alarm(reference, projector):
    current = _table(20, 51, "dark_blur", projector)  # clearly shifted, but only 20 rows
    result = detect_drift(reference, current, MonitoringConfig(min_rows=50))
    assert result.outcome == "not_enough_data" and not result.drifted
    assert result.reason == "not enough data: n=20 < min_rows=50"
    assert result.drifted_columns == [] and result.html == ""


def test_confidence_drop_alone_counts_as_drift(reference):
    current = reference.sample(120, random_state=0).reset_index(drop=True)
    current["confidence"] = current["confidence"] - 0.2
    result = detect_drift(reference, current, MonitoringConfig(drift_share=1.0), with_html=False)
    assert result.drifted and "mean confidence fell by" in result.reason
    assert result.confidence_drop == pytest.approx(
        reference["confidence"].mean() - current["confidence"].mean()
    )


def test_empty_embedding_columns_are_skipped_not_compared(reference):
    images = traffic(80, 61)
    probs, _ = _fake_model(images, 61)
    current = feature_table(
        images, [encoded_size(i) for i in images], probs, CLASSES, n_components=4
    )
    result = detect_drift(reference, current, CFG, with_html=False)
    assert set(result.skipped_columns) == {"emb_0", "emb_1", "emb_2", "emb_3"}
    assert not result.drifted


def test_empty_reference_is_reported(reference):
    with pytest.raises(RxVisionError, match="reference feature table has 0 rows"):
        detect_drift(reference.iloc[:0], reference, CFG)


def test_tables_without_shared_features_are_reported(reference):
    other = pd.DataFrame({"something": np.arange(60.0)})
    with pytest.raises(RxVisionError, match="share no feature column"):
        detect_drift(reference, other, CFG)


def test_result_has_evidently_html_whylogs_table_and_json_metadata(reference, projector):
    result = detect_drift(reference, _table(80, 71, "dark", projector), CFG)
    assert result.html.lstrip().startswith("<!DOCTYPE html>") and "brightness" in result.html
    meta = json.loads(json.dumps(result.to_dict()))
    assert meta["drifted"] is True and "brightness" in meta["drifted_columns"]
    assert meta["columns"]["brightness"]["drifted"] is True
    assert any(m["metric_name"].startswith("ValueDrift") for m in result.evidently["metrics"])
    wl = result.whylogs.set_index("column")
    assert wl.loc["brightness", "drift_category"] == "DRIFT"
    assert wl.loc["width", "drift_category"] == "NO_DRIFT"
    assert "DRIFT DETECTED" in result.summary()


def _with_flags(table: pd.DataFrame, uncertain: float, unknown: float, seed: int) -> pd.DataFrame:
    """The traffic log's flag columns (1.0/0.0) at the given shares of answers."""
    rng = np.random.default_rng(seed)
    out = table.copy()
    out["uncertain"] = (rng.random(len(out)) < uncertain).astype(float)
    out["unknown"] = (rng.random(len(out)) < unknown).astype(float)
    return out


RATES = {"uncertain_rate": 0.1, "unknown_rate": 0.02}


def test_abstention_at_the_evaluation_rates_is_no_drift(reference, projector):
    current = _with_flags(_table(200, 21, projector=projector), 0.1, 0.02, seed=1)
    result = detect_drift(
        reference, current, CFG, with_html=False, with_whylogs=False, reference_rates=RATES
    )
    assert not result.drifted, result.reason
    assert set(result.rates) == {"uncertain", "unknown"}
    assert result.rates["uncertain"].reference == 0.1
    assert abs(result.rates["uncertain"].rise) < CFG.max_uncertain_rise


@pytest.mark.parametrize("flag", ["uncertain", "unknown"])
def test_a_rise_of_uncertain_or_unknown_answers_alone_is_drift(reference, projector, flag):
    shares = {"uncertain": 0.1, "unknown": 0.02}
    shares[flag] += 0.4  # the images look ordinary; only the calibrated answers abstain more
    current = _with_flags(
        _table(200, 21, projector=projector), shares["uncertain"], shares["unknown"], seed=2
    )
    result = detect_drift(
        reference, current, CFG, with_html=False, with_whylogs=False, reference_rates=RATES
    )
    assert result.drifted and result.outcome == "drift"
    assert f"{flag} answers rose" in result.reason
    assert result.rates[flag].drifted and result.rates[flag].rise > 0.3
    summary = result.to_dict()
    assert summary["rates"][flag]["drifted"] is True
    json.dumps(summary)  # metadata must stay JSON


def test_uncalibrated_traffic_or_missing_rates_have_no_rate_rule(reference, projector):
    current = _table(200, 21, projector=projector)
    current["uncertain"] = np.nan  # what an uncalibrated model logs
    current["unknown"] = np.nan
    for rates in (RATES, None):
        result = detect_drift(
            reference, current, CFG, with_html=False, with_whylogs=False, reference_rates=rates
        )
        assert result.rates == {} and "answers rose" not in result.reason
    flagged = _with_flags(current, 0.9, 0.9, seed=3)
    result = detect_drift(reference, flagged, CFG, with_html=False, with_whylogs=False)
    assert result.rates == {}  # no evaluation rates: nothing to compare with
    assert "uncertain" not in result.columns  # the flags never go to Evidently
