"""Reference features for drift monitoring, kept as artifacts of the model version: built by
rxvision.monitoring.reference from the evaluation's held-out predictions (no image is
predicted again), with the fitted projector and a whylogs profile. The monitoring pipeline
compares served traffic against these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from rxvision.data.split import DatasetSplits
from steps.common import (
    EMBEDDING_PROJECTOR,
    REFERENCE_FEATURES,
    REFERENCE_PROFILE,
    REFERENCE_PROFILE_SUMMARY,
    to_config,
)


@step
def reference_features(
    model_bundle: Path, heldout_predictions: bytes, splits: DatasetSplits, config: dict[str, Any]
) -> tuple[
    Annotated[pd.DataFrame, REFERENCE_FEATURES],
    Annotated[str, EMBEDDING_PROJECTOR],
    Annotated[bytes, REFERENCE_PROFILE],
    Annotated[pd.DataFrame, REFERENCE_PROFILE_SUMMARY],
]:
    """Feature table of the held-out images (with predictions and embedding components),
    the fitted projector (JSON) and a serialized whylogs profile with its summary table."""
    from rxvision.monitoring.reference import reference_from_evaluation

    ref = reference_from_evaluation(
        heldout_predictions, splits.val, splits.test, splits.train, model_bundle, to_config(config)
    )
    log_metadata({"reference_rows": len(ref.table), "embedding_components": ref.n_components})
    projector = ref.projector.to_json() if ref.projector else ""
    return ref.table, projector, ref.profile.serialize(), ref.profile_summary()
