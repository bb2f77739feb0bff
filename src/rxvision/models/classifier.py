"""The classifier: a timm backbone plus our own head (linear, or attention pooling that also
returns where it looked). Freezing lives here so the training engine only flips a switch."""

from __future__ import annotations

import logging
import math

import timm
import torch
from torch import nn

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)


class LinearHead(nn.Module):
    """Global-pooled features -> dropout -> linear logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))


class AttentionPoolHead(nn.Module):
    """Pools a (B, C, H, W) feature map with multi-head attention from one learned query.

    Each head weighs every spatial position; the weights, reshaped to (B, heads, H, W), are the
    attention maps. The attended vector is the image embedding fed to the classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        # nn.MultiheadAttention needs embed_dim divisible by num_heads: project up when it is not.
        embed_dim = num_heads * math.ceil(in_channels / num_heads)
        self.proj = nn.Identity() if embed_dim == in_channels else nn.Linear(in_channels, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.query = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)
        self.num_heads = num_heads
        self.embed_dim = embed_dim

    def pool(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> embedding (B, E) and attention maps (B, heads, H, W)."""
        b, _, h, w = fmap.shape
        tokens = self.norm(self.proj(fmap.flatten(2).transpose(1, 2)))  # (B, H*W, E)
        query = self.query.expand(b, -1, -1)
        pooled, weights = self.attn(
            query, tokens, tokens, need_weights=True, average_attn_weights=False
        )  # pooled (B, 1, E); weights (B, heads, 1, H*W)
        return pooled.squeeze(1), weights.reshape(b, self.num_heads, h, w)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.pool(fmap)
        return self.fc(self.dropout(pooled))


class RxVisionClassifier(nn.Module):
    """timm backbone + head. ``forward`` gives logits, ``embed`` the pooled features and
    ``forward_with_attention`` (attention head only) the logits and attention maps."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head: str = "linear",
        attention_heads: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.head_type = head
        features = int(backbone.num_features)  # channels of the forward_features map
        # pooled width: differs from num_features where timm adds a post-pool conv (mobilenetv3)
        pooled = int(getattr(backbone, "head_hidden_size", None) or features)
        if head == "linear":
            self.head: nn.Module = LinearHead(pooled, num_classes, dropout)
        elif head == "attention":
            self.head = AttentionPoolHead(features, num_classes, attention_heads, dropout)
        else:
            raise RxVisionError(f"unknown model.head '{head}'", "use 'linear' or 'attention'")
        self._backbone_frozen = False
        self._frozen_stages: list[nn.Module] = []

    # ------------------------------------------------------------------ forward paths
    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.forward_features(x)
        if fmap.ndim != 4:
            raise RxVisionError(
                f"the attention head needs a spatial (B, C, H, W) feature map; this backbone "
                f"gives shape {tuple(fmap.shape)}",
                "use a CNN backbone (resnet, efficientnet, mobilenet...) or model.head=linear",
            )
        return fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_type == "attention":
            return self.head(self._feature_map(x))
        return self.head(self.backbone(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled image embedding (what the head classifies); used for drift monitoring."""
        if self.head_type == "attention":
            return self.head.pool(self._feature_map(x))[0]
        return self.backbone(x)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pooled embedding from one backbone pass (evaluation, monitoring)."""
        pooled = self.embed(x)
        return self.head.fc(self.head.dropout(pooled)), pooled

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and attention maps (B, heads, H, W); each map sums to one over H*W."""
        if self.head_type != "attention":
            raise RxVisionError(
                "attention maps exist only for the attention head",
                "build the model with model.head=attention",
            )
        pooled, maps = self.head.pool(self._feature_map(x))
        return self.head.fc(self.head.dropout(pooled)), maps

    # ---------------------------------------------------------------------- freezing
    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (no grads, BatchNorm statistics fixed) or unfreeze the backbone; the
        leading stages of ``freeze_stages`` stay frozen either way."""
        for param in self.backbone.parameters():
            param.requires_grad_(trainable)
        self._backbone_frozen = not trainable
        if not trainable:
            self.backbone.eval()
        elif self.training:
            self.backbone.train()
        self._freeze(self._frozen_stages)

    def freeze_stages(self, count: int) -> None:
        """Keep the backbone's first ``count`` stages (timm's coarse parameter groups: the
        stem, then each block stage) at their pretrained weights and BatchNorm statistics.
        Backpropagation then stops above them, where the feature maps are largest: with the
        stem and two stages of tf_efficientnet_lite0 frozen, a 160 px training step costs
        0.6x the full one (docs/benchmarks.md)."""
        matcher = getattr(self.backbone, "group_matcher", None)
        if matcher is None:
            raise RxVisionError(
                f"{type(self.backbone).__name__} does not name its stages (no timm "
                "group_matcher), so model.freeze_stages cannot pick them",
                "set model.freeze_stages=0 or use a timm CNN backbone",
            )
        groups = timm.models.group_modules(self.backbone, matcher(coarse=True))
        # the last group (the deepest stage, with the backbone's own head layers where it
        # has them) stays trainable: model.freeze_backbone freezes everything
        stages = [names for _, names in sorted(groups.items())][:-1]
        if count > len(stages):
            raise RxVisionError(
                f"model.freeze_stages={count}, but {type(self.backbone).__name__} has "
                f"{len(stages)} stages before its head",
                f"use a value from 0 to {len(stages)}",
            )
        modules = dict(self.backbone.named_modules())
        self._frozen_stages = [modules[name] for names in stages[:count] for name in names]
        self._freeze(self._frozen_stages)

    def _freeze(self, modules: list[nn.Module]) -> None:
        for module in modules:
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> RxVisionClassifier:
        super().train(mode)
        if self._backbone_frozen:
            # a frozen backbone must not drift through BatchNorm running statistics either
            self.backbone.eval()
        self._freeze(self._frozen_stages)
        return self


def create_backbone(backbone: str, head: str, pretrained_from_hub: bool = False) -> nn.Module:
    """A timm backbone without classifier (num_classes=0): pooled features for the linear head,
    ``forward_features`` maps for the attention head."""
    if not timm.is_model(backbone):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:8]
        raise RxVisionError(
            f"unknown backbone '{backbone}'",
            "model.backbone must be a timm model name"
            + (f", e.g. one of: {', '.join(close)}" if close else ""),
        )
    return timm.create_model(backbone, pretrained=pretrained_from_hub, num_classes=0)
