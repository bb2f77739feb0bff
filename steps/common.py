"""What the steps share: names, the config round trip, stack look-ups and a PNG materializer.

Artifact names are part of the contract with the deployment and monitoring pipelines: they
read the production model version's ``model_bundle`` (a directory, see
rxvision.models.bundle), ``evaluation`` and ``reference_features`` artifacts. Every step's
output names are defined here, none in the step modules.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, StackComponentType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from rxvision.config import RxVisionConfig, config_from_dict
from rxvision.names import MODEL_NAME  # noqa: F401 - re-exported for the pipelines

# Artifact names, every step output's in one place (stable: other pipelines, the dashboard and
# the tests read them by name).
# training: data
DATASET_INDEX = "dataset_index"
DATASET_FINGERPRINT = "dataset_fingerprint"
CLEAN_INDEX = "clean_index"
VALIDATION_REPORT = "validation_report"
VALIDATION_HTML = "validation_report_html"
IMAGE_FEATURE_TABLE = "image_feature_table"
DATA_QUALITY_HTML = "data_quality_report"
SPLITS = "dataset_splits"
TEST_FINGERPRINT = "test_fingerprint"
# training: model, evaluation, drift reference, registration
TRAINED_BUNDLE = "trained_bundle"
TRAINING_HISTORY = "training_history"
MODEL_BUNDLE = "model_bundle"
EVALUATION = "evaluation"
EVALUATION_HTML = "evaluation_report"
EVALUATION_PLOTS = "evaluation_plots"
# the evaluation's predictions of the validation + test images (npz), for the drift reference
HELDOUT_PREDICTIONS = "heldout_predictions"
REFERENCE_FEATURES = "reference_features"
REFERENCE_PROFILE = "reference_profile"
REFERENCE_PROFILE_SUMMARY = "reference_profile_summary"
EMBEDDING_PROJECTOR = "embedding_projector"
GATE_DECISION = "gate_decision"
REGISTRATION = "registration"
MODEL_CARD = "model_card"
# tuning
STUDY_SUMMARY = "study_summary"
BEST_CONFIG = "best_config"
TUNING_PLOTS = ("optimization_history", "param_importances", "parallel_coordinates")
# deployment
EXPORT_DIR = "exported_model"
EXPORT_REPORT = "export_report"
EXPORT_PROFILE = "export_profile"
BENTOML_MODEL = "bentoml_model_tag"
BENTO = "bento"
CONTAINER = "container_image"
DEPLOYED_SERVICE = "deployed_service"
# the Kubernetes branch (steps/k8s_deploy.py)
BUILD_CONTEXT = "bento_build_context"
BENTO_IMAGE = "bento_image"
K8S_MANIFESTS = "k8s_manifests"
K8S_MANIFESTS_VIEW = "k8s_manifests_view"
K8S_APPLY = "k8s_apply"
# monitoring and operations
TRAFFIC_FEATURES = "traffic_features"
TRAFFIC_PROFILE = "traffic_profile"
DRIFT_REPORT = "drift_report"
DRIFT_RESULT = "drift_result"
WHYLOGS_DRIFT = "whylogs_drift"
ALERTED = "drift_alerted"
DRIFT_METRICS = "drift_metrics"
# batch inference
BATCH_PREDICTIONS = "batch_predictions"
BATCH_SUMMARY = "batch_summary"
# MLflow 3 has no stages: the ZenML stage is mirrored as a registered-model alias of this name
MLFLOW_STAGE_ALIASES = {"production": "production", "staging": "staging"}


def to_config(config: dict[str, Any]) -> RxVisionConfig:
    """Steps take the config as a plain dict parameter (shown in the dashboard, part of the
    cache key); this turns it back into the validated schema."""
    return config_from_dict(config)


def config_param(cfg: RxVisionConfig) -> dict[str, Any]:
    """The JSON form of a config, as passed to the pipeline."""
    return cfg.model_dump(mode="json")


def active_component_name(component_type: StackComponentType) -> str | None:
    """Name of the active stack's component of this type (None if the stack has none)."""
    from zenml.client import Client

    components = Client().active_stack_model.components.get(component_type) or []
    return components[0].name if components else None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: MLflow params and metadata want flat keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (MLflow and metadata reject None/NaN)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


class PngPlots(dict):
    """Named PNG images (name -> bytes) shown as pictures in the ZenML dashboard."""


class PngPlotsMaterializer(BaseMaterializer):
    """Stores each PNG as a file of the artifact and registers it as an IMAGE visualization.

    Hand-written because ZenML's image materializer needs the pillow integration and
    handles one image per artifact; here one artifact holds all evaluation pictures.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PngPlots,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def load(self, data_type: type[Any]) -> PngPlots:
        plots = PngPlots()
        for name in sorted(fileio.listdir(self.uri)):
            name = str(name)
            if name.endswith(".png"):
                with fileio.open(os.path.join(self.uri, name), "rb") as fh:
                    plots[name[: -len(".png")]] = fh.read()
        return plots

    def save(self, data: PngPlots) -> None:
        for name, png in data.items():
            with fileio.open(os.path.join(self.uri, f"{name}.png"), "wb") as fh:
                fh.write(png)

    def save_visualizations(self, data: PngPlots) -> dict[str, VisualizationType]:
        return {os.path.join(self.uri, f"{name}.png"): VisualizationType.IMAGE for name in data}
