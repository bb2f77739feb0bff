"""Turn untrusted uploaded bytes into an RGB uint8 array, or say exactly why not.

Every way an upload can be wrong has its own ``reason`` so the service can answer a 4xx that
names it and count rejections by reason in /metrics.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rxvision.errors import RxVisionError

try:  # HEIC/HEIF from iPhones, through the maintained Pillow plugin when it is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _HEIF: tuple[str, ...] = ("HEIF",)
except ImportError:  # pragma: no cover - pillow-heif is a dependency; stay usable without it
    _HEIF = ()

# Still-image formats that phones, cameras and browsers produce. Only these Pillow plugins
# ever parse an upload (Image.open(formats=...)); animated GIF/WebP and multi-page TIFF/MPO
# give their first frame. Anything else Pillow knows (EPS, PDF, ICO, PSD, ...) is 415.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", *_HEIF)

# The reasons an upload is refused; the service maps them to HTTP status codes.
REASONS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_an_image",
    "unsupported_format",
    "truncated",
    "decompression_bomb",
    "aspect_ratio",
    "request_too_large",
)


class InvalidImage(RxVisionError):
    """An uploaded image that cannot be used; ``reason`` is one of ``REASONS``."""

    def __init__(
        self, reason: str, message: str, hint: str | None = None, index: int | None = None
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidImage reason {reason!r}")
        self.reason = reason
        self.message = message
        self.index = index  # which image of a request, where there are several
        super().__init__(message, hint)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body the service answers with."""
        body: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.index is not None:
            body["index"] = self.index
        return body


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be: bytes, pixels, shape and container formats per image, and the
    pixels of all images of one request together (decoded RGB costs 3 bytes a pixel)."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_aspect_ratio: float = 20.0
    max_request_pixels: int = 100_000_000
    allowed_formats: tuple[str, ...] = field(default=ALLOWED_FORMATS)

    @classmethod
    def from_config(cls, serving_cfg: Any) -> ImageLimits:
        """Limits from a ``ServingConfig``."""
        return cls(
            max_bytes=int(serving_cfg.max_image_bytes),
            max_pixels=int(serving_cfg.max_image_pixels),
            max_aspect_ratio=float(serving_cfg.max_aspect_ratio),
            max_request_pixels=int(serving_cfg.max_request_pixels),
        )


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode we accept into HxWx3 uint8 RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # PIL's convert("RGB") clips 16/32-bit values at 255; rescale the real range instead.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        # transparent pixels become white (a neutral background) rather than black
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """Parse the header only (no pixels yet) and check bytes, format, pixels and shape."""
    allowed = ", ".join(limits.allowed_formats)
    if not data:
        raise InvalidImage("empty", "the upload has zero bytes", "send the image file's content")
    if len(data) > limits.max_bytes:
        raise InvalidImage(
            "too_large",
            f"the upload has {len(data)} bytes, more than the limit of {limits.max_bytes}",
            "send a smaller (resized or recompressed) image",
        )
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning is replaced by our explicit pixel limit below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_plugins(limits.allowed_formats))
    except Image.DecompressionBombError as exc:
        raise InvalidImage(
            "decompression_bomb",
            f"the image declares too many pixels ({exc})",
            "send a smaller image",
        ) from None
    except UnidentifiedImageError:
        other = _format_name(data)
        if other:
            raise InvalidImage(
                "unsupported_format",
                f"image format {other} is not accepted",
                f"send one of: {allowed}",
            ) from None
        raise InvalidImage(
            "not_an_image", "the upload is not a recognisable image", f"send one of: {allowed}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - PIL raises assorted error types on corrupt headers
        raise InvalidImage(
            "not_an_image",
            f"the upload could not be read as an image ({exc})",
            f"send one of: {allowed}",
        ) from None
    fmt = (img.format or "unknown").upper()
    if fmt not in limits.allowed_formats:  # e.g. MPO, which Pillow's JPEG plugin opens
        img.close()
        raise InvalidImage(
            "unsupported_format", f"image format {fmt} is not accepted", f"send one of: {allowed}"
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        img.close()
        raise InvalidImage(
            "decompression_bomb",
            f"the image declares {width}x{height} = {width * height} pixels, "
            f"more than the limit of {limits.max_pixels}",
            "send a smaller image",
        )
    if width < 1 or height < 1:
        img.close()
        raise InvalidImage("not_an_image", f"the image has no pixels ({width}x{height})")
    if max(width, height) / min(width, height) > limits.max_aspect_ratio:
        img.close()
        raise InvalidImage(
            "aspect_ratio",
            f"the {fmt} image is {width}x{height}, longer than {limits.max_aspect_ratio:g}:1",
            "send a photo of the pill, not a strip or a banner",
        )
    return img


def _plugins(formats: Sequence[str]) -> list[str]:
    """Pillow plugin ids for ``formats`` (MPO has none of its own: the JPEG plugin opens it)."""
    Image.init()
    return [f for f in formats if f in Image.OPEN]


def _format_name(data: bytes) -> str | None:
    """The format Pillow would read ``data`` as, for naming a refused format (header only)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return (img.format or "").upper() or None
    except Exception:  # noqa: BLE001 - anything unreadable is simply not an image
        return None


def _load(img: Image.Image) -> np.ndarray:
    """Decode the (first frame's) pixels of an opened image into RGB uint8."""
    fmt = (img.format or "unknown").upper()
    with img:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return np.ascontiguousarray(_to_rgb(img))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(
                "truncated",
                f"the {fmt} image is truncated or corrupt and could not be decoded ({exc})",
                "upload the complete file again",
            ) from None


def decode_image(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode an upload into RGB uint8 (H, W, 3); raise ``InvalidImage`` naming the problem.

    Checks, in order: zero bytes, byte limit, recognisable image, allowed format, pixel limit
    (decompression bombs are refused before the pixels are decoded), aspect ratio, full decode
    (truncation). Grayscale, RGBA, palette, CMYK and 16-bit images are converted; EXIF rotation
    is applied; animations and multi-page files give their first frame.
    """
    return _load(_open(data, limits or ImageLimits()))


def decode_images(blobs: Sequence[bytes], limits: ImageLimits | None = None) -> list[np.ndarray]:
    """Decode the images of one request. Every header is checked before any pixels are
    decoded, so a request over ``max_request_pixels`` costs nothing but its headers; the
    ``InvalidImage`` names the image by ``index``."""
    limits = limits or ImageLimits()
    opened: list[Image.Image] = []
    try:
        total = 0
        for i, data in enumerate(blobs):
            try:
                opened.append(_open(data, limits))
            except InvalidImage as exc:
                exc.index = i
                raise
            width, height = opened[-1].size
            total += width * height
        if total > limits.max_request_pixels:
            raise InvalidImage(
                "request_too_large",
                f"the {len(blobs)} images hold {total} pixels together, more than the limit of "
                f"{limits.max_request_pixels} per request",
                "send fewer or smaller images per request",
            )
        out = []
        for i, img in enumerate(opened):
            try:
                out.append(_load(img))
            except InvalidImage as exc:
                exc.index = i
                raise
        return out
    finally:
        for img in opened:
            img.close()
