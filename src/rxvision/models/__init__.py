"""Models: timm backbone + head, pretrained-weight providers, and the model bundle format."""

from rxvision.models.build import build_model, normalization_for, normalization_values
from rxvision.models.bundle import (
    BundleInfo,
    LoadedBundle,
    load_bundle,
    read_bundle_info,
    save_bundle,
)
from rxvision.models.classifier import AttentionPoolHead, RxVisionClassifier
from rxvision.models.weights import hub_reachable, package_weights_file, resolve_weights_source

__all__ = [
    "AttentionPoolHead",
    "BundleInfo",
    "LoadedBundle",
    "RxVisionClassifier",
    "build_model",
    "hub_reachable",
    "load_bundle",
    "normalization_for",
    "normalization_values",
    "package_weights_file",
    "read_bundle_info",
    "resolve_weights_source",
    "save_bundle",
]
