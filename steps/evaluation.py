"""Evaluation on the test split: metrics, calibration and prediction sets, behavioural tests,
the HTML report and PNG plots for the dashboard, and the final model bundle (the trained
weights with their test metrics and calibration inside)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.data.split import DatasetSplits
from steps.common import (
    EVALUATION,
    EVALUATION_HTML,
    EVALUATION_PLOTS,
    HELDOUT_PREDICTIONS,
    MODEL_BUNDLE,
    PngPlots,
    PngPlotsMaterializer,
    scalar_metrics,
    to_config,
)

logger = get_logger(__name__)


@step(output_materializers={EVALUATION_PLOTS: PngPlotsMaterializer})
def evaluate_model(
    trained_bundle: Path,
    splits: DatasetSplits,
    training_history: list[dict[str, Any]],
    test_fingerprint: str,
    config: dict[str, Any],
) -> tuple[
    Annotated[Path, ArtifactConfig(name=MODEL_BUNDLE, artifact_type=ArtifactType.MODEL)],
    Annotated[dict[str, Any], EVALUATION],
    Annotated[HTMLString, EVALUATION_HTML],
    Annotated[PngPlots, EVALUATION_PLOTS],
    Annotated[bytes, HELDOUT_PREDICTIONS],
]:
    """Calibrate on the validation split, score the test split, seal both into the bundle."""
    from rxvision.evaluation import plots
    from rxvision.evaluation.model_eval import evaluate_trained_bundle, report_sections
    from steps.tracking import log_pngs

    cfg = to_config(config)
    out = Path(tempfile.mkdtemp(prefix="rxvision-bundle-"))
    ev = evaluate_trained_bundle(trained_bundle, splits.val, splits.test, cfg, out)
    result, metrics = ev.result, scalar_metrics(ev.metrics)
    images = PngPlots(
        confusion_matrix=plots.confusion_matrix_png(result.confusion, result.classes),
        per_class_f1=plots.per_class_f1_png(result.per_class),
        reliability=plots.reliability_diagram_png(result.calibration),
    )
    if training_history:
        images["training_curves"] = plots.training_curves_png(training_history)
    if ev.gallery_png:
        images["worst_mistakes"] = ev.gallery_png
    _log_mlflow_metrics(metrics)
    log_pngs(dict(images))
    html = plots.render_html_report(
        result,
        training_history,
        extra={"test_fingerprint": test_fingerprint},
        sections=report_sections(ev, cfg.gate.min_class_accuracy),
    )
    log_metadata({**metrics, "test_fingerprint": test_fingerprint, **ev.tables()})
    log_metadata(ev.tables(), infer_model=True)  # the model version carries the trust tables
    evaluation = {
        **result.to_dict(include_samples=True),
        "test_fingerprint": test_fingerprint,
        **ev.tables(),
    }
    logger.info(
        "test accuracy %.4f, macro_f1 %.4f, ece %.4f, coverage %.3f (target %.2f)",
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["ece"],
        metrics["coverage"],
        cfg.evaluation.coverage,
    )
    return ev.bundle_dir, evaluation, HTMLString(html), images, ev.heldout.to_bytes()


def _log_mlflow_metrics(metrics: dict[str, float]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics)
