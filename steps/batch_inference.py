"""Batch inference step: classify a folder or CSV with the model version's bundle, write a
predictions CSV, and log features exactly as the service does (for monitoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from steps.common import BATCH_PREDICTIONS, BATCH_SUMMARY, to_config

logger = get_logger(__name__)


@step(enable_cache=False)
def batch_predict(
    model_bundle: Path,
    embedding_projector: str,
    input_path: str,
    output_csv: str,
    config: dict[str, Any],
) -> tuple[Annotated[pd.DataFrame, BATCH_PREDICTIONS], Annotated[dict[str, Any], BATCH_SUMMARY]]:
    """The service's serving path (rxvision.serving.classify); features logged through the
    service's TrafficLogger (sampled by monitoring.traffic_sample_rate) into the traffic
    folder the monitoring pipeline reads."""
    from bentos.traffic import TrafficLogger, monitoring_options
    from rxvision.monitoring import EmbeddingProjector
    from rxvision.serving import ImageLimits, Predictor
    from rxvision.serving.batch import classify_items, list_inputs, summarize, write_predictions

    cfg = to_config(config)
    version = str(get_step_context().model.number)
    predictor = Predictor.from_bundle(
        Path(model_bundle),
        runtime=cfg.serving.runtime,
        top_k=cfg.serving.top_k,
        model_version=version,
        threads=cfg.serving.threads,
    )
    projector = EmbeddingProjector.from_json(embedding_projector) if embedding_projector else None
    traffic = TrafficLogger(
        predictor.classes,
        model_version=version,
        projector=projector,
        enabled=cfg.serving.monitoring,
        sample_rate=cfg.monitoring.traffic_sample_rate,
        monitor_options=monitoring_options(cfg.serving),
    )

    def log_batch(images, probs, sizes, emb, preds):
        traffic.log_prediction(
            images,
            probs,
            file_sizes=sizes,
            embeddings=emb,
            uncertain=[p.uncertain for p in preds],
            unknown=[p.unknown for p in preds],
        )

    rows = classify_items(
        list_inputs(Path(input_path)),
        predictor,
        ImageLimits.from_config(cfg.serving),
        batch_size=cfg.serving.max_batch_size,
        on_batch=log_batch,
    )
    out = write_predictions(rows, Path(output_csv))
    summary = {
        **summarize(rows),
        "output_csv": str(out),
        "input": input_path,
        "model_version": version,
        "logged_rows": traffic.rows,
        "logging_errors": traffic.errors,
    }
    log_metadata({"batch_inference": {k: v for k, v in summary.items() if k != "class_counts"}})
    logger.info("wrote %d predictions to %s", summary["predicted"], out)
    return pd.read_csv(out), summary
