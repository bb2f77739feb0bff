"""Test-set evaluation: predictions, metrics with bootstrap intervals, calibration, McNemar's
comparison, and the pictures and HTML report people read in the dashboard."""

from rxvision.evaluation.compare import McNemarResult, mcnemar
from rxvision.evaluation.metrics import (
    CalibrationBins,
    EvaluationResult,
    evaluate,
    expected_calibration_error,
)
from rxvision.evaluation.plots import (
    confusion_matrix_png,
    per_class_f1_png,
    reliability_diagram_png,
    render_html_report,
    training_curves_png,
)
from rxvision.evaluation.predict import Predictions, predict

__all__ = [
    "CalibrationBins",
    "EvaluationResult",
    "McNemarResult",
    "Predictions",
    "confusion_matrix_png",
    "evaluate",
    "expected_calibration_error",
    "mcnemar",
    "per_class_f1_png",
    "predict",
    "reliability_diagram_png",
    "render_html_report",
    "training_curves_png",
]
