"""Image transforms: albumentations pipelines for training/evaluation, and
:func:`preprocess_image`, the serving path that reproduces the eval pipeline without
building albumentations objects per request.

albumentations (which imports torch) is imported only by the pipeline builders, so
:class:`Normalization` and :func:`preprocess_image` (the serving path) stay light."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over a network we lack

import cv2
import numpy as np

from rxvision.config import DataConfig
from rxvision.errors import RxVisionError

if TYPE_CHECKING:
    import albumentations as A

INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


@dataclass(frozen=True)
class Normalization:
    """What the model expects as input: the pretrained weights' mean/std, the side length,
    the resize interpolation and the eval crop share (resize to image_size / crop_pct, then
    center-crop image_size). Saved in every model bundle so serving preprocesses the same way."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    image_size: int = 128
    interpolation: str = "bilinear"
    # 1.0 = no crop margin: synthetic pills may sit near the border
    crop_pct: float = 1.0
    # shrink by pixel-area averaging (cv2.INTER_AREA) instead of ``interpolation``: a bilinear
    # or bicubic kernel reads a few source pixels per output pixel and aliases when shrinking
    # (8-13 dB further from an antialiased resize: benchmarks/bench_resize.py); enlarging uses
    # ``interpolation``. Bundles saved without the key were trained without it (from_dict).
    antialias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise RxVisionError(
                f"normalization mean/std need 3 values (RGB), got {self.mean} / {self.std}"
            )
        if any(v <= 0 for v in self.std):
            raise RxVisionError(f"normalization std must be > 0, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise RxVisionError(
                f"unknown interpolation '{self.interpolation}'",
                f"choose one of: {', '.join(INTERPOLATIONS)}",
            )
        if not 0 < self.crop_pct <= 1:
            raise RxVisionError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.image_size < 8:
            raise RxVisionError(f"image_size must be >= 8, got {self.image_size}")

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop."""
        return round(self.image_size / self.crop_pct)

    @property
    def cv2_interpolation(self) -> int:
        return INTERPOLATIONS[self.interpolation]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        known = {"mean", "std", "image_size", "interpolation", "crop_pct", "antialias"}
        unknown = set(data) - known
        if unknown:
            raise RxVisionError(
                f"unknown normalization keys: {sorted(unknown)}", f"known: {sorted(known)}"
            )
        values = {"antialias": False, **data}  # bundles from before the key shrank without it
        return cls(**{k: tuple(v) if k in ("mean", "std") else v for k, v in values.items()})

    def resize_interpolation(self, scale: float) -> int:
        """The cv2 interpolation for a resize by ``scale`` (albumentations' own rule for
        ``area_for_downscale``)."""
        return cv2.INTER_AREA if self.antialias and scale < 1.0 else self.cv2_interpolation

    @property
    def area_for_downscale(self) -> str | None:
        """albumentations' resize option that applies :meth:`resize_interpolation`."""
        return "image" if self.antialias else None


def _normalize_and_tensor(norm: Normalization) -> list[Any]:
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    return [A.Normalize(mean=norm.mean, std=norm.std, max_pixel_value=255.0), ToTensorV2()]


def build_train_transform(
    cfg: DataConfig, norm: Normalization, seed: int | None = None
) -> A.Compose:
    """Training augmentations from ``cfg.augmentation`` (its preset and keys). Pills have no
    "up", so flips and 90-degree turns are label-preserving. With ``scale_min`` 1.0 there is no
    random crop: the image is framed exactly as at evaluation. ``seed`` fixes the augmentation
    stream (DataLoader workers re-seed it per worker, see :mod:`rxvision.data.loader`)."""
    import albumentations as A

    aug = cfg.augmentation
    size = norm.image_size
    interp = norm.cv2_interpolation
    framing: list[Any] = (
        [
            A.SmallestMaxSize(
                max_size=norm.resize_size,
                interpolation=interp,
                area_for_downscale=norm.area_for_downscale,
            ),
            A.CenterCrop(height=size, width=size),
        ]
        if aug.scale_min >= 1.0
        else [
            A.RandomResizedCrop(
                size=(size, size),
                scale=(aug.scale_min, 1.0),
                interpolation=interp,
                area_for_downscale=norm.area_for_downscale,
            )
        ]
    )
    steps: list[Any] = [
        *framing,
        A.HorizontalFlip(p=aug.hflip),
        A.VerticalFlip(p=aug.vflip),
        A.RandomRotate90(p=aug.rotate90),
        A.Affine(
            scale=(1.0 - aug.scale_limit, 1.0 + aug.scale_limit),
            translate_percent=(-aug.shift_limit, aug.shift_limit),
            rotate=(-aug.rotate_limit, aug.rotate_limit),
            interpolation=interp,
            border_mode=cv2.BORDER_REFLECT_101,
            p=aug.affine,
        ),
        A.ColorJitter(
            brightness=aug.brightness,
            contrast=aug.contrast,
            saturation=aug.saturation,
            hue=aug.hue,
            p=aug.color_jitter,
        ),
        *_normalize_and_tensor(norm),
    ]
    return A.Compose(steps, seed=seed)


def build_eval_transform(norm: Normalization) -> A.Compose:
    """Deterministic: shorter side to image_size / crop_pct, center crop, normalize."""
    import albumentations as A

    size = norm.image_size
    return A.Compose(
        [
            A.SmallestMaxSize(
                max_size=norm.resize_size,
                interpolation=norm.cv2_interpolation,
                area_for_downscale=norm.area_for_downscale,
            ),
            A.CenterCrop(height=size, width=size),
            *_normalize_and_tensor(norm),
        ],
        seed=0,
    )


def preprocess_image(rgb_uint8: np.ndarray, norm: Normalization) -> np.ndarray:
    """The eval transform for serving: HxWx3 uint8 RGB -> 3xSxS float32, numerically the same
    as :func:`build_eval_transform` (a unit test holds them together). Hand-written with cv2 so
    a request does not pay for albumentations' per-call parameter machinery.

    A long, thin image is upscaled on its short side, so the full resize would grow with its
    length (1 x 100,000 px -> GBs): past ``RESIZE_CAP`` times the crop, only the source span
    that reaches the center crop is resized (within an interpolation step of the full resize)."""
    img = np.asarray(rgb_uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise RxVisionError(
            "preprocess_image needs an HxWx3 uint8 RGB array, "
            f"got dtype {img.dtype} shape {img.shape}",
            "decode with rxvision.data.images.to_rgb first",
        )
    height, width = img.shape[:2]
    # same rule as albumentations' SmallestMaxSize: one scale, rounded sides
    scale = norm.resize_size / min(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    size = norm.image_size
    if new_h * new_w > RESIZE_CAP * norm.resize_size**2:
        img, new_h, new_w = _resize_center_span(img, new_h, new_w, norm, scale)
    elif (new_h, new_w) != (height, width):
        img = cv2.resize(img, (new_w, new_h), interpolation=norm.resize_interpolation(scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    img = img[top : top + size, left : left + size]
    mean = np.asarray(norm.mean, dtype=np.float32) * 255.0
    inv_std = np.reciprocal(np.asarray(norm.std, dtype=np.float32) * 255.0)
    lut = (
        np.arange(256, dtype=np.float32)[:, None] - mean
    ) * inv_std  # 256 x 3, as albumentations does
    out = lut[img, np.arange(3)]
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


# the most pixels (in units of the resize's square) a resize may produce before only the
# center span is resized; 8 keeps every aspect ratio up to 8:1 on the exact path
RESIZE_CAP = 8


def _resize_center_span(
    img: np.ndarray, new_h: int, new_w: int, norm: Normalization, scale: float
) -> tuple[np.ndarray, int, int]:
    """Resize only the source span along the long axis that lands in the center crop (plus a
    few pixels for the interpolation kernel) and cut the crop window out of it along that
    axis; returns it with its (height, width), so the caller's center crop is a no-op there."""
    size = norm.image_size
    axis = 0 if new_h > new_w else 1
    src_len, dst_len = img.shape[axis], (new_h, new_w)[axis]
    ratio = dst_len / src_len
    start = (dst_len - size) // 2  # the crop window [start, start + size) in the full resize
    lo = max(0, int(np.floor(start / ratio)) - 2)
    hi = min(src_len, int(np.ceil((start + size) / ratio)) + 2)
    span = img[lo:hi] if axis == 0 else img[:, lo:hi]
    span_dst = max(size, round((hi - lo) * ratio))
    dsize = (new_w, span_dst) if axis == 0 else (span_dst, new_h)
    out = cv2.resize(span, dsize, interpolation=norm.resize_interpolation(scale))
    # where the crop window starts inside the resized span
    offset = round(start - lo * ratio)
    offset = min(max(0, offset), span_dst - size)
    out = out[offset : offset + size] if axis == 0 else out[:, offset : offset + size]
    return (out, size, new_w) if axis == 0 else (out, new_h, size)
