"""Reference features for drift monitoring, kept as artifacts of the model version.

The same features the service logs per request (rxvision.monitoring.features), computed on
the held-out images (validation + test) with the trained model's predictions, and embedding
components from a projection fitted on the training split; plus a whylogs profile of that
table. Held-out images, not training ones: the model is over-confident on what it was trained
on, so a training-split reference would make the confidence-drop rule fire on normal traffic. The monitoring pipeline compares served traffic
against these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step
from zenml.logger import get_logger

from rxvision.data.split import DatasetSplits
from steps.common import EMBEDDING_PROJECTOR, REFERENCE_FEATURES, REFERENCE_PROFILE, to_config
from steps.evaluation import predict_samples

logger = get_logger(__name__)


@step
def reference_features(
    model_bundle: Path, splits: DatasetSplits, config: dict[str, Any]
) -> tuple[
    Annotated[pd.DataFrame, REFERENCE_FEATURES],
    Annotated[str, EMBEDDING_PROJECTOR],
    Annotated[bytes, REFERENCE_PROFILE],
    Annotated[pd.DataFrame, "reference_profile_summary"],
]:
    """Feature table of the held-out images (with predictions and embedding components),
    the fitted projector (JSON) and a serialized whylogs profile with its summary table."""
    import whylogs

    from rxvision.data.images import load_rgb
    from rxvision.models.bundle import load_bundle
    from rxvision.monitoring.features import EmbeddingProjector, feature_table

    cfg = to_config(config)
    loaded = load_bundle(model_bundle)
    norm = loaded.info.normalization_obj()
    held_out = list(splits.val) + list(splits.test)
    # one pass over the held-out images (the reference) and the training ones (the projector)
    preds = predict_samples(loaded.model, held_out + list(splits.train), loaded.info.classes, norm, cfg,
                            with_embeddings=True)
    n = len(held_out)
    train_embeddings = preds.embeddings[n:]
    if n >= cfg.monitoring.min_rows:
        samples, probs, embeddings = held_out, preds.probs[:n], preds.embeddings[:n]
    else:
        # too few held-out images for a drift reference: add training ones, and say so
        logger.warning("only %d held-out images (< monitoring.min_rows=%d): the drift reference "
                       "includes training images, so its confidence is optimistic",
                       n, cfg.monitoring.min_rows)
        samples, probs, embeddings = held_out + list(splits.train), preds.probs, preds.embeddings
    k = min(cfg.monitoring.embedding_components, len(splits.train) - 1, train_embeddings.shape[1])
    projector = EmbeddingProjector.fit(train_embeddings, k, seed=cfg.training.seed) if k > 0 else None
    table = feature_table(
        (load_rgb(s.path) for s in samples), file_sizes=[s.path.stat().st_size for s in samples],
        probs=probs, classes=loaded.info.classes, embeddings=embeddings,
        projector=projector, n_components=k,
    )
    view = whylogs.log(pandas=table).profile().view()
    log_metadata({"reference_rows": len(table), "embedding_components": k})
    logger.info("reference features: %d rows x %d columns", len(table), table.shape[1])
    summary = view.to_pandas().reset_index()
    # whylogs puts FrequentItem objects in some cells; Parquet (the artifact format) needs text
    for col in summary.columns[summary.dtypes == object]:
        summary[col] = summary[col].map(lambda v: None if v is None else str(v))
    return table, projector.to_json() if projector else "", view.serialize(), summary
