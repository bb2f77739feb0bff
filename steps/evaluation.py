"""Evaluation on the test split: metrics, the HTML report and PNG plots for the dashboard, and
the final model bundle (the trained weights with their test metrics inside)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.config import RxVisionConfig
from rxvision.data.sources import Sample
from rxvision.data.split import DatasetSplits
from steps.common import (
    EVALUATION,
    EVALUATION_HTML,
    EVALUATION_PLOTS,
    MODEL_BUNDLE,
    PngPlots,
    PngPlotsMaterializer,
    scalar_metrics,
    to_config,
)

logger = get_logger(__name__)


def predict_samples(
    model: Any, samples: list[Sample], classes: list[str], normalization: Any, cfg: RxVisionConfig,
    with_embeddings: bool = False,
) -> Any:
    """Run a model over samples with the eval transform (the library's loader + predict)."""
    from rxvision.data.loader import ImageDataset, build_loader
    from rxvision.data.sources import LabelMap
    from rxvision.data.transforms import build_eval_transform
    from rxvision.evaluation import predict

    dataset = ImageDataset(samples, LabelMap(classes), build_eval_transform(normalization))
    loader = build_loader(dataset, cfg.data.loader, train=False, seed=cfg.training.seed)
    return predict(model, loader, device="cpu", with_embeddings=with_embeddings)


def evaluate_bundle(bundle_dir: Path, samples: list[Sample], cfg: RxVisionConfig) -> Any:
    """EvaluationResult of a saved bundle on samples (also used to re-score the champion)."""
    from rxvision.evaluation import evaluate
    from rxvision.models.bundle import load_bundle

    loaded = load_bundle(bundle_dir)
    preds = predict_samples(loaded.model, samples, loaded.info.classes,
                            loaded.info.normalization_obj(), cfg)
    return evaluate(preds.probs, preds.labels, loaded.info.classes, cfg.evaluation)


@step(output_materializers={EVALUATION_PLOTS: PngPlotsMaterializer})
def evaluate_model(
    trained_bundle: Path, splits: DatasetSplits, training_history: list[dict[str, Any]],
    test_fingerprint: str, config: dict[str, Any],
) -> tuple[
    Annotated[Path, ArtifactConfig(name=MODEL_BUNDLE, artifact_type=ArtifactType.MODEL)],
    Annotated[dict[str, Any], EVALUATION],
    Annotated[HTMLString, EVALUATION_HTML],
    Annotated[PngPlots, EVALUATION_PLOTS],
]:
    """Score the trained model on the test split and seal the metrics into its bundle."""
    from rxvision.evaluation import plots
    from rxvision.models.bundle import load_bundle, save_bundle
    from steps.tracking import log_pngs

    cfg = to_config(config)
    result = evaluate_bundle(trained_bundle, splits.test, cfg)
    metrics = scalar_metrics(result.metrics)
    loaded = load_bundle(trained_bundle)
    final = Path(tempfile.mkdtemp(prefix="rxvision-bundle-"))
    save_bundle(final, loaded.model, loaded.info.classes, loaded.info.normalization, loaded.info.config,
                metrics=metrics, fingerprint=loaded.info.fingerprint)
    images = PngPlots(
        confusion_matrix=plots.confusion_matrix_png(result.confusion, result.classes),
        per_class_f1=plots.per_class_f1_png(result.per_class),
        reliability=plots.reliability_diagram_png(result.calibration),
    )
    if training_history:
        images["training_curves"] = plots.training_curves_png(training_history)
    _log_mlflow_metrics(metrics)
    log_pngs(dict(images))
    html = plots.render_html_report(result, training_history, extra={"test_fingerprint": test_fingerprint})
    log_metadata({**metrics, "test_fingerprint": test_fingerprint})
    evaluation = {**result.to_dict(include_samples=True), "test_fingerprint": test_fingerprint}
    logger.info("test accuracy %.4f, macro_f1 %.4f, ece %.4f",
                metrics.get("accuracy", np.nan), metrics.get("macro_f1", np.nan), metrics.get("ece", np.nan))
    return final, evaluation, HTMLString(html), images


def _log_mlflow_metrics(metrics: dict[str, float]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics)
