"""Plots are valid PNGs; the HTML report is self-contained and carries the numbers."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from rxvision.config import EvaluationConfig
from rxvision.evaluation import (
    confusion_matrix_png,
    evaluate,
    per_class_f1_png,
    reliability_diagram_png,
    render_html_report,
    training_curves_png,
)

HISTORY = [
    {
        "epoch": e,
        "train_loss": 2 / e,
        "val_loss": 2.2 / e,
        "train_accuracy": 1 - 0.5 / e,
        "val_accuracy": 1 - 0.6 / e,
        "train_macro_f1": 1 - 0.55 / e,
        "val_macro_f1": 1 - 0.65 / e,
        "lr": 1e-3 * 0.7**e,
    }
    for e in range(1, 5)
]


def result_for(num_classes: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), labels] += 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = [f"pill<{i:03d}>" for i in range(num_classes)]
    return evaluate(probs, labels, classes, EvaluationConfig(bootstrap_samples=100))


def open_png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture(scope="module")
def small():
    return result_for(5, 60)


def test_each_plot_is_a_valid_png(small):
    for data in (
        confusion_matrix_png(small.confusion, small.classes),
        per_class_f1_png(small.per_class),
        reliability_diagram_png(small.calibration),
        training_curves_png(HISTORY),
    ):
        img = open_png(data)
        assert img.width > 200 and img.height > 200


def test_confusion_matrix_grows_with_many_classes():
    many = result_for(100, 300)
    big = open_png(confusion_matrix_png(many.confusion, many.classes))
    few = open_png(confusion_matrix_png(result_for(12, 60).confusion, [str(i) for i in range(12)]))
    assert big.width > 1.5 * few.width


def test_training_curves_tolerate_missing_keys_and_empty_history():
    open_png(training_curves_png([{"loss": 1.0}, {"loss": 0.5}]))
    open_png(training_curves_png([]))


def test_confusion_matrix_with_wrong_shape_is_an_error(small):
    with pytest.raises(ValueError, match="does not match"):
        confusion_matrix_png(np.zeros((3, 3)), small.classes)


def test_html_report_is_self_contained_and_carries_the_metrics(small):
    page = render_html_report(small, HISTORY, title="Model <v2>", extra={"model version": "v2"})
    assert page.startswith("<!DOCTYPE html>")
    # nothing fetched from elsewhere: no links, scripts or stylesheets by URL
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4
    for b64 in images:
        open_png(base64.b64decode(b64))
    m = small.metrics
    for key in ("accuracy", "macro_f1", "top3_accuracy", "ece", "log_loss", "weighted_f1"):
        assert key in page
    assert f"{m['accuracy']:.4f}" in page and f"{m['macro_f1']:.4f}" in page
    assert f"{m['accuracy_ci_low']:.4f} to {m['accuracy_ci_high']:.4f}" in page
    # names are escaped, not injected
    assert "Model &lt;v2&gt;" in page and "pill&lt;000&gt;" in page and "<v2>" not in page
    assert "model version" in page and "Worst confusions" in page


def test_html_report_without_history_has_no_training_curves(small):
    page = render_html_report(small, None, title="t", extra=None)
    assert len(re.findall(r"data:image/png;base64,", page)) == 3
    assert "Training curves" not in page


def test_html_report_shows_nested_context_as_tables_escaped_once(small):
    gate = {
        "stage": "staging",
        "rules": [{"rule": "min_accuracy", "passed": True, "message": "a < b"}],
    }
    page = render_html_report(small, None, title="t", extra={"gate": gate})
    assert "<th>rule</th>" in page and "<td>min_accuracy</td>" in page
    assert "a &lt; b" in page and "&amp;lt;" not in page


def test_html_report_without_intervals_says_not_available():
    labels = np.arange(30) % 3
    probs = np.full((30, 3), 0.1)
    probs[np.arange(30), labels] = 0.8
    res = evaluate(probs, labels, ["a", "b", "c"], EvaluationConfig(bootstrap_samples=0))
    page = render_html_report(res, [], title="t", extra={})
    assert "n/a" in page and "CI " not in page.split("<h2>")[0]
