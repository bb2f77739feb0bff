"""The production model version of a real local stack, and traffic logged through it the way
the service logs it (the integration tests of training, deployment, monitoring, alerting)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def production_version() -> Any:
    """The model's production version in the active ZenML store."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    from steps.common import MODEL_NAME

    return Client().get_model_version(MODEL_NAME, ModelStages.PRODUCTION)


def log_production_traffic(cfg: Any, images: Sequence[np.ndarray]) -> tuple[int, int]:
    """``images`` predicted by the production model in batches of 8 and logged by the
    service's TrafficLogger into ``cfg.serving``'s traffic folder: (rows logged, errors)."""
    from bentos.traffic import TrafficLogger, monitoring_options
    from rxvision.monitoring import EmbeddingProjector
    from rxvision.serving.predictor import Predictor
    from steps.common import EMBEDDING_PROJECTOR, MODEL_BUNDLE

    mv = production_version()
    predictor = Predictor.from_bundle(mv.get_artifact(MODEL_BUNDLE).load(), runtime="torch")
    projector_json = mv.get_artifact(EMBEDDING_PROJECTOR).load()
    projector = EmbeddingProjector.from_json(projector_json) if projector_json else None
    logger = TrafficLogger(
        predictor.classes,
        model_version=str(mv.number),
        projector=projector,
        monitor_options=monitoring_options(cfg.serving),
    )
    logged = 0
    for start in range(0, len(images), 8):
        batch = list(images[start : start + 8])
        probs, emb = predictor.predict_arrays(predictor.preprocess(batch))
        logged += logger.log_prediction(
            batch, probs, file_sizes=[1000] * len(batch), embeddings=emb
        )
    return logged, logger.errors
