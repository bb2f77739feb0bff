"""Names that the pipelines, the BentoML service and the registries share, each defined once.

A ZenML model version has a number (1, 2, ...) and a name (the number as text unless someone
named it). BentoML labels and MLflow tags carry both under separate keys, so a key never means
one in one place and the other elsewhere. Served answers' ``model_version`` is the number.
"""

from __future__ import annotations

# the ZenML model, its MLflow mirror and the BentoML model all carry this name
MODEL_NAME = "rxvision-classifier"

# keys of the BentoML model labels (deployment) and the MLflow model-version tags (registration)
ZENML_MODEL_KEY = "zenml_model"
VERSION_NUMBER_KEY = "zenml_model_version_number"
VERSION_NAME_KEY = "zenml_model_version_name"
STAGE_KEY = "zenml_model_stage"
# MLflow tag of the mirrored stage (MLflow 3 has no stages; aliases plus this tag stand in)
MLFLOW_STAGE_TAG = "rxvision.stage"
