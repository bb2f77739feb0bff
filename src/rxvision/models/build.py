"""build_model and normalization_for: the two calls the rest of the project makes to get a
model and the input normalisation its weights expect."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import timm

from rxvision.config import ModelConfig
from rxvision.errors import RxVisionError
from rxvision.models.classifier import RxVisionClassifier, create_backbone
from rxvision.models.weights import (
    PACKAGE_WEIGHTS,
    create_hub_backbone,
    load_pretrained,
    resolve_weights_source,
)

if TYPE_CHECKING:
    from rxvision.data.transforms import Normalization

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_model(
    cfg: ModelConfig, num_classes: int, load_weights: bool = True
) -> RxVisionClassifier:
    """The configured classifier with its pretrained weights (``load_weights=False`` skips
    fetching them, for a model whose full state dict is loaded next, e.g. from a bundle)."""
    if num_classes < 2:
        raise RxVisionError(
            f"a classifier needs at least 2 classes, got {num_classes}", "check the dataset"
        )
    source = (
        resolve_weights_source(cfg.backbone, cfg.pretrained, cfg.weights, cfg.weights_path)
        if load_weights
        else "none"
    )
    if source == "hub":
        backbone = create_hub_backbone(cfg.backbone)
    else:
        backbone = create_backbone(cfg.backbone, cfg.head)
        if source in ("file", "package"):
            load_pretrained(backbone, cfg.backbone, source, cfg.weights_path)
        elif load_weights:
            log.warning(
                "model.pretrained=false: %s starts from random initialisation", cfg.backbone
            )
    model = RxVisionClassifier(backbone, num_classes, cfg.head, cfg.attention_heads, cfg.dropout)
    if cfg.freeze_stages:
        model.freeze_stages(cfg.freeze_stages)
    if cfg.freeze_backbone:
        model.set_backbone_trainable(False)
    model.weights_source = source  # type: ignore[assignment]  # for logs and bundle metadata
    return model


def normalization_values(cfg: ModelConfig) -> dict[str, object]:
    """mean/std/interpolation of the configured weights (timm's pretrained_cfg; the offline
    package's own mean = std = 0.5)."""
    pcfg = timm.models.get_pretrained_cfg(cfg.backbone)
    mean, std, interp = IMAGENET_MEAN, IMAGENET_STD, "bilinear"
    if pcfg is not None:
        mean, std = tuple(pcfg.mean), tuple(pcfg.std)
        interp = pcfg.interpolation or interp
    source = resolve_weights_source(cfg.backbone, cfg.pretrained, cfg.weights, cfg.weights_path)
    if source == "package":
        spec = PACKAGE_WEIGHTS[cfg.backbone]
        mean, std = spec.mean, spec.std
    return {
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "interpolation": interp,
    }


def normalization_for(cfg: ModelConfig, image_size: int) -> Normalization:
    """The Normalization (data layer type) matching the model's pretrained weights.

    crop_pct is 1.0: our training crops are drawn from the whole image (RandomResizedCrop), so
    evaluation sees the whole image too rather than ImageNet's 0.875 centre crop."""
    from rxvision.data.transforms import Normalization

    values = normalization_values(cfg)
    return Normalization(
        mean=values["mean"],
        std=values["std"],
        image_size=image_size,
        interpolation=values["interpolation"],
        crop_pct=1.0,
    )
