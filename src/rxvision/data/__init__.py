"""The data layer: sources, synthetic pills, validation, split, transforms and loaders.

The names below are loaded lazily, so importing one submodule (e.g. the synthetic generator in
a worker process) does not pull in torch and albumentations.
"""

from __future__ import annotations

from rxvision.lazy import lazy_names

_EXPORTS = {
    "DatasetIndex": "sources",
    "LabelMap": "sources",
    "Sample": "sources",
    "load_source": "sources",
    "DatasetSplits": "split",
    "fingerprint": "split",
    "stratified_split": "split",
    "Normalization": "transforms",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
    "preprocess_image": "transforms",
    "ImageDataset": "loader",
    "build_loader": "loader",
    "ValidationReport": "validation",
    "apply_policy": "validation",
    "validate_dataset": "validation",
    "generate_synthetic_pills": "synthetic",
}

__all__ = [
    "DatasetIndex",
    "DatasetSplits",
    "ImageDataset",
    "LabelMap",
    "Normalization",
    "Sample",
    "ValidationReport",
    "apply_policy",
    "build_eval_transform",
    "build_loader",
    "build_train_transform",
    "fingerprint",
    "generate_synthetic_pills",
    "load_source",
    "preprocess_image",
    "stratified_split",
    "validate_dataset",
]


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__)
