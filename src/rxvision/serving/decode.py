"""Turn untrusted uploaded bytes into an RGB uint8 array, or say exactly why not.

Every way an upload can be wrong has its own ``reason`` so the service can answer a 4xx that
names it and count rejections by reason in /metrics.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rxvision.errors import RxVisionError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")

# The reasons an upload is refused; the service maps them to HTTP status codes.
REASONS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_an_image",
    "unsupported_format",
    "truncated",
    "decompression_bomb",
)


class InvalidImage(RxVisionError):
    """An uploaded image that cannot be used; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str, hint: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidImage reason {reason!r}")
        self.reason = reason
        self.message = message
        super().__init__(message, hint)

    def to_dict(self) -> dict[str, str]:
        """The JSON error body the service answers with."""
        body = {"reason": self.reason, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may be: bytes, pixels and container formats."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    allowed_formats: tuple[str, ...] = field(default=ALLOWED_FORMATS)

    @classmethod
    def from_config(cls, serving_cfg: object) -> ImageLimits:
        """Limits from a ``ServingConfig`` (``max_image_bytes``, ``max_image_pixels``)."""
        return cls(
            max_bytes=int(serving_cfg.max_image_bytes),
            max_pixels=int(serving_cfg.max_image_pixels),
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


def decode_image(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode an upload into RGB uint8 (H, W, 3); raise ``InvalidImage`` naming the problem.

    Checks, in order: zero bytes, byte limit, recognisable image, allowed format, pixel limit
    (decompression bombs are refused before the pixels are decoded), full decode (truncation).
    Grayscale, RGBA, palette, CMYK and 16-bit images are converted; EXIF rotation is applied.
    """
    limits = limits or ImageLimits()
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
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InvalidImage(
            "decompression_bomb", f"the image declares too many pixels ({exc})", "send a smaller image"
        ) from None
    except UnidentifiedImageError:
        raise InvalidImage(
            "not_an_image", "the upload is not a recognisable image", f"send one of: {allowed}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - PIL raises assorted error types on corrupt headers
        raise InvalidImage(
            "not_an_image", f"the upload could not be read as an image ({exc})", f"send one of: {allowed}"
        ) from None
    with img:
        fmt = (img.format or "unknown").upper()
        if fmt not in limits.allowed_formats:
            raise InvalidImage(
                "unsupported_format", f"image format {fmt} is not accepted", f"send one of: {allowed}"
            )
        width, height = img.size
        if width * height > limits.max_pixels:
            raise InvalidImage(
                "decompression_bomb",
                f"the image declares {width}x{height} = {width * height} pixels, "
                f"more than the limit of {limits.max_pixels}",
                "send a smaller image",
            )
        if width < 1 or height < 1:
            raise InvalidImage("not_an_image", f"the image has no pixels ({width}x{height})")
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
