"""The data layer: sources, synthetic pills, validation, split, transforms and loaders.

Import from the submodules (``rxvision.data.sources`` etc.); the names below are re-exported
for convenience.
"""

from rxvision.data.loader import ImageDataset, build_loader
from rxvision.data.sources import DatasetIndex, LabelMap, Sample, load_source
from rxvision.data.split import DatasetSplits, fingerprint, stratified_split
from rxvision.data.transforms import (
    Normalization,
    build_eval_transform,
    build_train_transform,
    preprocess_image,
)

__all__ = [
    "DatasetIndex",
    "DatasetSplits",
    "ImageDataset",
    "LabelMap",
    "Normalization",
    "Sample",
    "build_eval_transform",
    "build_loader",
    "build_train_transform",
    "fingerprint",
    "load_source",
    "preprocess_image",
    "stratified_split",
]
