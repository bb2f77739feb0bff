"""Test-set evaluation: predictions, metrics with bootstrap intervals, calibration, McNemar's
comparison, and the pictures and HTML report people read in the dashboard."""

from rxvision.evaluation.compare import McNemarResult, mcnemar
from rxvision.evaluation.metrics import (
    CalibrationBins,
    EvaluationResult,
    evaluate,
    expected_calibration_error,
)
from rxvision.evaluation.predict import Predictions, predict

__all__ = [
    "CalibrationBins",
    "EvaluationResult",
    "McNemarResult",
    "Predictions",
    "evaluate",
    "expected_calibration_error",
    "mcnemar",
    "predict",
]
