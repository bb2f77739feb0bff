"""Simulated traffic for drift demos, tests and benchmarks: small pill-like images and the
shifts production sees (a darker room, a blurred camera, a pill type never trained on).

Hand-written because the shifts must be exact and reproducible from a seed; the drawing
is deliberately simple (the data layer owns the realistic synthetic dataset).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Shift = Literal["none", "dark", "blur", "dark_blur", "new_pill"]

#: Body colours of the simulated pill kinds (RGB); the last one is the "never seen" kind.
_PILL_COLOURS = np.array(
    [
        [235, 235, 230],  # white tablet
        [220, 80, 70],  # red
        [240, 200, 60],  # yellow
        [90, 140, 220],  # blue
        [250, 160, 190],  # pink
        [120, 200, 120],  # green
        [60, 20, 110],  # never-seen: dark violet capsule
    ],
    dtype=np.float32,
)
NUM_KNOWN_KINDS = len(_PILL_COLOURS) - 1


def pill_image(rng: np.random.Generator, size: int = 64, kind: int | None = None) -> np.ndarray:
    """One pill on a light, slightly textured background, RGB uint8 (size x size)."""
    kind = int(rng.integers(NUM_KNOWN_KINDS)) if kind is None else kind
    bg = rng.uniform(170, 215) + rng.normal(0, 4, size=(size, size, 1))
    img = np.repeat(bg, 3, axis=2).astype(np.float32)
    colour = _PILL_COLOURS[kind] + rng.normal(0, 8, size=3)
    centre = (int(size / 2 + rng.normal(0, size / 16)), int(size / 2 + rng.normal(0, size / 16)))
    if kind == len(_PILL_COLOURS) - 1:
        axes = (int(size * 0.42), int(size * 0.14))  # a long capsule: a new shape too
    else:
        axes = (int(size * rng.uniform(0.22, 0.32)), int(size * rng.uniform(0.18, 0.26)))
    angle = float(rng.uniform(0, 180))
    cv2.ellipse(img, centre, axes, angle, 0, 360, colour.tolist(), thickness=-1)
    # an imprint line and a little sensor noise so sharpness is not degenerate
    cv2.line(
        img,
        (centre[0] - axes[0] // 2, centre[1]),
        (centre[0] + axes[0] // 2, centre[1]),
        (colour * 0.6).tolist(),
        1,
    )
    img += rng.normal(0, 3, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def shift_image(rgb: np.ndarray, shift: Shift, rng: np.random.Generator) -> np.ndarray:
    """Apply a production shift to one image (``new_pill`` is made by :func:`traffic`)."""
    out = rgb.astype(np.float32)
    if shift in ("dark", "dark_blur"):
        out = out * rng.uniform(0.35, 0.55)
    if shift in ("blur", "dark_blur"):
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(1.8, 2.6)))
    return np.clip(out, 0, 255).astype(np.uint8)


def traffic(
    n: int, seed: int, shift: Shift = "none", size: int = 64, new_share: float = 1.0
) -> list[np.ndarray]:
    """``n`` simulated request images; ``new_pill`` makes ``new_share`` of them the unseen kind."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        unseen = shift == "new_pill" and rng.random() < new_share
        img = pill_image(rng, size, kind=len(_PILL_COLOURS) - 1 if unseen else None)
        if shift not in ("none", "new_pill"):
            img = shift_image(img, shift, rng)
        images.append(img)
    return images


def encoded_size(rgb: np.ndarray, quality: int = 90) -> int:
    """Bytes of the image as a JPEG: a realistic ``file_size`` for simulated uploads."""
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return int(buf.size) if ok else 0
