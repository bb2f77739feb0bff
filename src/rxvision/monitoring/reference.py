"""The drift reference of a trained model: the features the service logs per request,
computed on the held-out images (validation + test) with the evaluation's predictions, an
embedding projection fitted on those embeddings, and a whylogs profile of the table.

Held-out images, not training ones: the model is over-confident on what it was trained on,
so a training-split reference would make the confidence-drop rule fire on normal traffic.
The predictions come from the evaluation (rxvision.evaluation.model_eval.HeldOutPredictions),
so no image is predicted again here; only when there are fewer held-out images than
`monitoring.min_rows` are training images predicted and added (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rxvision.config import RxVisionConfig
from rxvision.data.sources import Sample
from rxvision.errors import RxVisionError
from rxvision.monitoring.features import EmbeddingProjector, feature_table

logger = logging.getLogger(__name__)


@dataclass
class DriftReference:
    """The reference feature table, its projector (None without embedding columns) and the
    whylogs profile view of the table (serialize() gives bytes)."""

    table: pd.DataFrame
    projector: EmbeddingProjector | None
    profile: object
    n_components: int

    def profile_summary(self) -> pd.DataFrame:
        """The profile's per-column summary as text cells (Parquet needs them)."""
        summary = self.profile.to_pandas().reset_index()
        # whylogs puts FrequentItem objects in some cells
        for col in summary.columns[summary.dtypes == object]:
            summary[col] = summary[col].map(lambda v: None if v is None else str(v))
        return summary


def build_reference(
    samples: Sequence[Sample],
    probs: np.ndarray,
    embeddings: np.ndarray,
    classes: Sequence[str],
    cfg: RxVisionConfig,
) -> DriftReference:
    """The reference from predictions of `samples` (same order)."""
    from rxvision.data.images import load_rgb
    from rxvision.monitoring.profiles import profile_frame

    if len(samples) != len(probs) or len(samples) != len(embeddings):
        raise RxVisionError(
            f"{len(samples)} reference images but {len(probs)} predictions and "
            f"{len(embeddings)} embeddings",
            "build the reference from one prediction pass over the same images",
        )
    # the projection is fitted on the reference's own embeddings: its axes are the directions
    # along which normal traffic varies most
    k = min(cfg.monitoring.embedding_components, len(samples) - 1, embeddings.shape[1])
    projector = EmbeddingProjector.fit(embeddings, k, seed=cfg.training.seed) if k > 0 else None
    table = feature_table(
        (load_rgb(s.path) for s in samples),
        file_sizes=[s.path.stat().st_size for s in samples],
        probs=probs,
        classes=list(classes),
        embeddings=embeddings,
        projector=projector,
        n_components=k,
    )
    logger.info("reference features: %d rows x %d columns", len(table), table.shape[1])
    return DriftReference(table, projector, profile_frame(table), max(k, 0))


def reference_from_evaluation(
    heldout_bytes: bytes,
    val: Sequence[Sample],
    test: Sequence[Sample],
    train: Sequence[Sample],
    bundle_dir: Path,
    cfg: RxVisionConfig,
) -> DriftReference:
    """The reference from the evaluation's held-out predictions; training images are predicted
    (once) and added only when the held-out images are fewer than `monitoring.min_rows`."""
    from rxvision.evaluation.model_eval import HeldOutPredictions, predict_samples
    from rxvision.models.bundle import load_bundle, read_bundle_info

    held = HeldOutPredictions.from_bytes(heldout_bytes)
    samples = list(val) + list(test)
    if [str(s.path) for s in samples] != held.paths:
        raise RxVisionError(
            "the evaluation's held-out predictions are for other images than this run's "
            "validation + test splits",
            "run evaluation and reference on the same splits (one pipeline run)",
        )
    probs, embeddings = held.probs, held.embeddings
    if len(samples) < cfg.monitoring.min_rows and train:
        logger.warning(
            "only %d held-out images (< monitoring.min_rows=%d): the drift reference "
            "includes training images, so its confidence is optimistic",
            len(samples),
            cfg.monitoring.min_rows,
        )
        loaded = load_bundle(bundle_dir)
        extra = predict_samples(
            loaded.model,
            train,
            loaded.info.classes,
            loaded.info.normalization_obj(),
            cfg,
            device=cfg.evaluation.device,
            with_embeddings=True,
        )
        samples += list(train)
        probs = np.concatenate([probs, extra.probs])
        embeddings = np.concatenate([embeddings, extra.embeddings])
    return build_reference(samples, probs, embeddings, read_bundle_info(bundle_dir).classes, cfg)
