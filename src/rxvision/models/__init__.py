"""Models: timm backbone + head, pretrained-weight providers, and the model bundle format.

The names below are loaded lazily (PEP 562), so importing one submodule (e.g. the torch-free
bundle reader in the serving path) does not pull in torch and timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxvision.lazy import lazy_names

_EXPORTS = {
    "build_model": "build",
    "normalization_for": "build",
    "normalization_values": "build",
    "BundleInfo": "bundle",
    "LoadedBundle": "bundle",
    "load_bundle": "bundle",
    "read_bundle_info": "bundle",
    "save_bundle": "bundle",
    "verify_bundle": "bundle",
    "AttentionPoolHead": "classifier",
    "RxVisionClassifier": "classifier",
    "hub_reachable": "weights",
    "package_weights_file": "weights",
    "resolve_weights_source": "weights",
}

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
    "verify_bundle",
]

if TYPE_CHECKING:
    from rxvision.models.build import build_model, normalization_for, normalization_values
    from rxvision.models.bundle import (
        BundleInfo,
        LoadedBundle,
        load_bundle,
        read_bundle_info,
        save_bundle,
        verify_bundle,
    )
    from rxvision.models.classifier import AttentionPoolHead, RxVisionClassifier
    from rxvision.models.weights import hub_reachable, package_weights_file, resolve_weights_source


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, __all__)
