"""Reading image files into RGB uint8, the one way every part of RxVision does it.

Validation's ``convert`` policy, the training ``ImageDataset`` and (through :func:`to_rgb`)
the serving decoder share this code, so an image that passes validation always loads and is
seen with the same pixels in training and in production.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from rxvision.errors import RxVisionError

# Truncated files must be an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
RGB_MODES = frozenset({"RGB"})
_HASH_CHUNK = 1 << 20


def _high_bit_to_uint8(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float greyscale -> 8-bit by the value range of the mode.

    PIL's own ``convert('L')`` clips 16-bit values at 255 (a nearly white image), hence the
    hand-written scaling.
    """
    arr = np.asarray(img)
    if img.mode == "F":
        # float images carry no range; stretch what is there
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    else:
        arr = arr.astype(np.float64)
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        scaled = arr / top * 255.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _flatten_alpha(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    rgba = img.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode -> RGB: transparency is flattened onto ``background``, 16-bit greyscale is
    rescaled (not clipped), CMYK/YCbCr/LAB/HSV/1/L go through PIL's converters."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_to_uint8(img).convert("RGB")
    if mode == "P":
        if "transparency" in img.info:
            return _flatten_alpha(img, background)
        return img.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten_alpha(img, background)
    return img.convert("RGB")


def open_image(path: Path) -> Image.Image:
    """Open and fully decode one file (truncation and bad data raise), EXIF orientation applied.

    Raises ``OSError``/``ValueError``/``Image.DecompressionBombError`` from PIL; callers decide
    whether that is a validation finding or an :class:`RxVisionError`.
    """
    with Image.open(path) as img:
        img.load()
        oriented = ImageOps.exif_transpose(img)
    return oriented if oriented is not None else img


def load_rgb(path: Path) -> np.ndarray:
    """Read a file as an HxWx3 uint8 RGB array, converting any colour mode like validation's
    ``convert`` policy does. An unreadable file is an :class:`RxVisionError` naming it."""
    try:
        img = open_image(Path(path))
    except FileNotFoundError:
        raise RxVisionError(
            f"image file not found: {path}",
            "re-run data validation; the dataset changed since it was indexed",
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RxVisionError(
            f"cannot read image {path}: {exc}",
            "run data validation (policy skip excludes unreadable files) or fix/remove the file",
        ) from None
    return np.asarray(to_rgb(img), dtype=np.uint8)


def file_sha256(path: Path) -> str:
    """Content hash of one file (exact-duplicate detection and the dataset fingerprint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(paths: list[Path], threads: int = 8) -> dict[Path, str | None]:
    """sha256 of many files with a thread pool (I/O bound); unreadable files map to None."""

    def one(path: Path) -> str | None:
        try:
            return file_sha256(path)
        except OSError:
            return None

    unique = list(dict.fromkeys(Path(p) for p in paths))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return dict(zip(unique, pool.map(one, unique)))
