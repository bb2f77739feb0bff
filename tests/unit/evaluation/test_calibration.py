"""Temperature scaling, split-conformal prediction sets and the NumPy-only answer contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rxvision.calibration import Calibration, apply_calibration, calibrate, softmax
from rxvision.calibration.fit import conformal_set_threshold, fit_calibration, fit_temperature
from rxvision.errors import RxVisionError


def synthetic_logits(
    n: int, classes: int, true_t: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of an over-confident model: labels are drawn from softmax(logits / true_t)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, classes))
    logits[np.arange(n), rng.integers(0, classes, n)] += 4
    p = softmax(logits, true_t)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_temperature_scaling_recovers_the_temperature_that_generated_the_labels():
    logits, labels = synthetic_logits(4000, 10, true_t=2.5, seed=0)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.08)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_sets_cover_held_out_data_at_the_target(coverage):
    logits, labels = synthetic_logits(6000, 10, true_t=2.0, seed=1)
    cal = fit_calibration(logits[:2000], labels[:2000], coverage, 0.5, 0.01)
    out = calibrate(logits[2000:], cal)
    covered = out.sets[np.arange(4000), labels[2000:]].mean()
    # split conformal: coverage >= target, and at most target + 1/(n+1) above it on average;
    # 0.015 is about two binomial standard errors on 4000 test rows
    assert coverage - 0.015 <= covered <= coverage + 0.02
    assert out.set_size.mean() < 10  # not the trivial all-labels set


def test_conformal_sets_match_crepes_on_the_same_scores():
    crepes = pytest.importorskip("crepes")
    logits, labels = synthetic_logits(1500, 6, true_t=1.5, seed=2)
    probs = softmax(logits)
    cal_p, cal_y, test_p = probs[:500], labels[:500], probs[500:]
    threshold = conformal_set_threshold(cal_p, cal_y, 0.9)
    ours = test_p >= threshold
    cc = crepes.ConformalClassifier()
    cc.fit(1 - cal_p[np.arange(500), cal_y])
    theirs = cc.predict_set(1 - test_p, confidence=0.9, smoothing=False).astype(bool)
    assert (ours == theirs).mean() > 0.999  # equal up to ties at the threshold


def test_too_few_calibration_images_give_the_full_label_set():
    logits, labels = synthetic_logits(10, 4, true_t=1.0, seed=3)
    cal = fit_calibration(logits, labels, 0.95, 0.5, 0.01)  # ceil(11 * 0.95) = 11 > 10
    assert cal.set_threshold == 0.0
    assert calibrate(logits, cal).sets.all()


def test_answer_fields_carry_set_uncertain_unknown_and_version():
    cal = Calibration(
        temperature=1.0,
        set_threshold=0.2,
        coverage=0.9,
        confidence_threshold=0.6,
        ood_threshold=-5.0,
    )
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.2, -3.0], [0.1, 0.0, 0.05]])
    a, b, c = apply_calibration(logits, cal.to_dict(), classes=["x", "y", "z"])
    assert a["label_set"] == ["x"] and not a["uncertain"] and not a["unknown"]
    assert b["label_set"] == ["y", "x"] and b["uncertain"]  # two labels in the set
    assert c["unknown"] and c["uncertain"]  # low energy margin: unlike the calibration images
    assert a["calibration_version"] == cal.version == c["calibration_version"]
    assert sum(a["probs"]) == pytest.approx(1.0)
    json.dumps([a, b, c])  # JSON-ready


def test_an_edited_calibration_is_refused():
    cal = Calibration(
        temperature=1.5,
        set_threshold=0.1,
        coverage=0.9,
        confidence_threshold=0.5,
        ood_threshold=0.0,
    ).to_dict()
    cal["set_threshold"] = 0.0
    with pytest.raises(RxVisionError, match="does not match its parameters"):
        Calibration.from_dict(cal)


def test_bad_logits_are_reported():
    cal = Calibration(1.0, 0.1, 0.9, 0.5, 0.0)
    with pytest.raises(RxVisionError, match="logits of shape"):
        apply_calibration(np.zeros((2, 3, 4)), cal)
    with pytest.raises(RxVisionError, match="NaN"):
        apply_calibration(np.array([[np.nan, 1.0]]), cal)
    with pytest.raises(RxVisionError, match="class names"):
        apply_calibration(np.zeros((1, 3)), cal, classes=["a", "b"])


def test_applying_a_calibration_imports_numpy_only():
    code = (
        "import sys, numpy as np\n"
        "from rxvision.calibration import Calibration, apply_calibration\n"
        "apply_calibration(np.zeros((1, 3)), Calibration(1.0, 0.1, 0.9, 0.5, 0.0))\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy', 'pandas', 'timm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
