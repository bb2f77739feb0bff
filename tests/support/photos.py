"""Real photos that are not pills, for out-of-distribution checks: scikit-image's samples
(people, animals, objects, textures), as RGB uint8."""

from __future__ import annotations

import numpy as np

SKIMAGE_SAMPLES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "coins",
    "clock",
)


def skimage_photos() -> list[np.ndarray]:
    """The samples as (H, W, 3) uint8; grayscale ones are repeated over three channels."""
    import skimage.data as skd

    out = []
    for name in SKIMAGE_SAMPLES:
        a = np.asarray(getattr(skd, name)())
        out.append((np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]).astype(np.uint8))
    return out
