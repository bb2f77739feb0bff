"""Production monitoring: the features shared by the training reference and served traffic,
traffic-log reading, whylogs profiles and drift detection.

Only the light feature module is imported here (the service imports it per request);
``rxvision.monitoring.drift`` pulls in Evidently and is imported where needed.
"""

from rxvision.monitoring.features import (
    CATEGORICAL_FEATURES,
    FEATURE_SCHEMA,
    IMAGE_FEATURES,
    PREDICTION_FEATURES,
    EmbeddingProjector,
    embedding_columns,
    feature_columns,
    feature_table,
    image_features,
    prediction_features,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURE_SCHEMA",
    "IMAGE_FEATURES",
    "PREDICTION_FEATURES",
    "EmbeddingProjector",
    "embedding_columns",
    "feature_columns",
    "feature_table",
    "image_features",
    "prediction_features",
]
