"""Data steps: load the source, validate it (policy fail/skip), profile it, split it.

They take only the ``data`` section of the config, so a change to training or the gate does
not invalidate them. ``load_data`` always runs (it reads the files to fingerprint them); the
steps after it are cached by their inputs' contents (index, fingerprint, data config), so they
re-run only when the data or its config changes.
"""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.config import DataConfig
from rxvision.data.sources import DatasetIndex
from rxvision.data.split import DatasetSplits, fingerprint, stratified_split
from rxvision.monitoring.report_html import ReportPages
from steps.common import (
    CLEAN_INDEX,
    DATA_QUALITY_HTML,
    DATASET_FINGERPRINT,
    DATASET_INDEX,
    IMAGE_FEATURE_TABLE,
    SPLITS,
    TEST_FINGERPRINT,
    VALIDATION_HTML,
    VALIDATION_REPORT,
)
from steps.report_pages import INTERACTIVE_FILE, ReportPagesMaterializer

logger = get_logger(__name__)


@step(enable_cache=False)
def load_data(
    data_config: dict[str, Any],
) -> tuple[Annotated[DatasetIndex, DATASET_INDEX], Annotated[str, DATASET_FINGERPRINT]]:
    """Index the configured source (generating synthetic pills if needed) and fingerprint it."""
    from rxvision.data.sources import load_source

    data = DataConfig.model_validate(data_config)
    index = load_source(data)
    fp = fingerprint(index)
    logger.info(
        "dataset: %d images, %d classes, fingerprint %s", len(index), len(index.classes), fp[:12]
    )
    log_metadata(
        {
            "images": len(index),
            "classes": len(index.classes),
            "fingerprint": fp,
            "source": data.source,
            "class_counts": index.counts(),
        }
    )
    return index, fp


@step
def validate_data(
    index: DatasetIndex, dataset_fingerprint: str, data_config: dict[str, Any]
) -> tuple[
    Annotated[DatasetIndex, CLEAN_INDEX],
    Annotated[dict[str, Any], VALIDATION_REPORT],
    Annotated[HTMLString, VALIDATION_HTML],
]:
    """Integrity checks; policy `fail` stops the run naming the files, `skip` drops them."""
    from rxvision.data.validation import apply_policy, validate_dataset

    data = DataConfig.model_validate(data_config)
    report = validate_dataset(index, data.validation)
    report_dict = report.to_dict()
    log_metadata(
        {
            "validation_passed": bool(report.passed),
            "policy": data.validation.policy,
            "dataset_fingerprint": dataset_fingerprint,
        }
    )
    clean = apply_policy(index, report, data.validation)  # raises RxVisionError under `fail`
    excluded = [str(p) for p in getattr(report, "excluded", [])]
    log_metadata({"excluded_files": len(excluded), "images_after_validation": len(clean)})
    if excluded:
        logger.warning(
            "validation excluded %d file(s): %s", len(excluded), ", ".join(excluded[:10])
        )
    return clean, report_dict, HTMLString(report.to_html())


@step(output_materializers={DATA_QUALITY_HTML: ReportPagesMaterializer})
def profile_data(
    index: DatasetIndex, dataset_fingerprint: str, data_config: dict[str, Any]
) -> tuple[Annotated[pd.DataFrame, IMAGE_FEATURE_TABLE], Annotated[ReportPages, DATA_QUALITY_HTML]]:
    """The image-feature table (what drift monitoring compares) and an Evidently data
    summary over it: a static page the dashboard shows, the interactive report beside it."""
    from evidently import Report
    from evidently.presets import DataSummaryPreset

    from rxvision.data.images import load_rgb
    from rxvision.monitoring.features import feature_table
    from rxvision.monitoring.report_html import evidently_static_html

    data = DataConfig.model_validate(data_config)
    images = (load_rgb(s.path) for s in index.samples)
    sizes = [s.path.stat().st_size for s in index.samples]
    table = feature_table(images, file_sizes=sizes, n_components=0)
    table.insert(0, "label", [s.label for s in index.samples])
    # Evidently 0.7's own API (ZenML's evidently step speaks the legacy one).
    snapshot = Report([DataSummaryPreset()]).run(current_data=table, reference_data=None)
    log_metadata({"feature_rows": len(table), "source": data.source})
    static = evidently_static_html(
        snapshot.dict(),
        f"Data summary: {len(table)} images, {table['label'].nunique()} classes",
        note=f"Evidently's DataSummaryPreset over the image features. The interactive "
        f"report is this artifact's second visualization ({INTERACTIVE_FILE}): download it "
        "and open it in a browser.",
    )
    return table, ReportPages(static, snapshot.get_html_str(as_iframe=False))


@step
def split_data(
    index: DatasetIndex, dataset_fingerprint: str, data_config: dict[str, Any]
) -> tuple[Annotated[DatasetSplits, SPLITS], Annotated[str, TEST_FINGERPRINT]]:
    """Stratified train/val/test split; the test split's own fingerprint lets the gate tell
    whether two models were scored on the same images."""
    data = DataConfig.model_validate(data_config)
    splits = stratified_split(index, data.split)
    test_fp = fingerprint(index.with_samples(splits.test))
    logger.info("split: %s", splits.summary())
    log_metadata(
        {
            "train": len(splits.train),
            "val": len(splits.val),
            "test": len(splits.test),
            "test_fingerprint": test_fp,
            "dataset_fingerprint": dataset_fingerprint,
        }
    )
    return splits, test_fp
