"""Where the model looked: Grad-CAM class-activation maps for every head (captum's
LayerGradCam on the backbone's feature map), the attention head's own attention maps, the
`explain` PNG for one image and the gallery of the worst test mistakes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from rxvision.errors import RxVisionError


class _FeatureMap(nn.Module):
    """The backbone's spatial feature map as one module, so Grad-CAM can hook its output."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def _logits_from_map(model: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    if getattr(model, "head_type", "linear") == "attention":
        return model.head(fmap)
    return model.head(model.backbone.forward_head(fmap))


def class_activation_maps(
    model: nn.Module, x: torch.Tensor, target: Sequence[int] | None = None
) -> np.ndarray:
    """Grad-CAM maps (B, H, W) in [0, 1] at the input's resolution, for `target` (default:
    the predicted class). Works for any rxvision classifier (timm backbone + head)."""
    from captum.attr import LayerAttribution, LayerGradCam

    if not callable(getattr(getattr(model, "backbone", None), "forward_features", None)):
        raise RxVisionError(
            f"{type(model).__name__} has no timm backbone with forward_features",
            "explain models built by rxvision.models.build_model",
        )
    features = _FeatureMap(model.backbone)
    was_training = model.training
    model.eval()
    try:
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(dim=1).tolist()
        cam = LayerGradCam(lambda inp: _logits_from_map(model, features(inp)), features)
        with torch.enable_grad():
            attr = cam.attribute(x, target=list(target), relu_attributions=True)
        attr = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), "bilinear")
    finally:
        model.train(was_training)
    maps = attr[:, 0].float().cpu().numpy()
    top = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, top, out=np.zeros_like(maps), where=top > 0)


def attention_maps(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The attention head's maps averaged over heads (B, H, W), upsampled to the input and
    scaled to [0, 1]; the attention head only."""
    with torch.no_grad():
        _, maps = model.forward_with_attention(x)
        maps = torch.nn.functional.interpolate(
            maps.mean(dim=1, keepdim=True).float(), size=tuple(x.shape[-2:]), mode="bilinear"
        )[:, 0]
    out = maps.cpu().numpy()
    top = out.reshape(len(out), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(out, top, out=np.zeros_like(out), where=top > 0)


@dataclass
class Explained:
    """One image and its maps, for drawing."""

    image: np.ndarray  # HxWx3 uint8, as the model saw it (after resize/crop)
    cam: np.ndarray  # HxW in [0, 1]
    attention: np.ndarray | None
    title: str


def _model_view(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    img = x.detach().cpu().float().numpy().transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def explain_tensors(
    model: nn.Module,
    x: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    titles: Sequence[str],
    target: Sequence[int] | None = None,
) -> list[Explained]:
    """Maps for a preprocessed batch (B, 3, S, S) on the model's device."""
    cams = class_activation_maps(model, x, target)
    att = None
    if getattr(model, "head_type", "") == "attention":
        was_training = model.training
        model.eval()
        try:
            att = attention_maps(model, x)
        finally:
            model.train(was_training)
    return [
        Explained(
            image=_model_view(x[i], mean, std),
            cam=cams[i],
            attention=None if att is None else att[i],
            title=titles[i],
        )
        for i in range(len(x))
    ]


def gallery_png(items: Sequence[Explained]) -> bytes:
    """One row per image: the image, its Grad-CAM overlay, and the attention map if any."""
    if not items:
        raise RxVisionError("no images to draw", "pass at least one explained image")
    cols = 3 if any(it.attention is not None for it in items) else 2
    fig = Figure(figsize=(2.6 * cols, 2.7 * len(items)))
    for r, it in enumerate(items):
        panels = [("image", None), ("Grad-CAM", it.cam)]
        if cols == 3:
            panels.append(("attention", it.attention))
        for c, (name, heat) in enumerate(panels):
            ax = fig.add_subplot(len(items), cols, r * cols + c + 1)
            ax.imshow(it.image)
            if heat is not None:
                ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(it.title if c == 0 else name, fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def explain(model: nn.Module, image: np.ndarray, normalization, classes=None) -> bytes:
    """PNG of one HxWx3 uint8 RGB image with the map of the predicted class (Grad-CAM; and the
    attention map for the attention head): what a later POST /explain returns."""
    from rxvision.data.transforms import preprocess_image

    device = next(model.parameters()).device
    x = torch.from_numpy(preprocess_image(np.asarray(image), normalization))[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), dim=1)[0]
        top = int(probs.argmax())
        label = classes[top] if classes is not None else str(top)
        title = f"predicted {label} ({float(probs[top]):.2f})"
        items = explain_tensors(model, x, normalization.mean, normalization.std, [title], [top])
    finally:
        model.train(was_training)
    return gallery_png(items)
