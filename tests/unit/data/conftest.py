"""Small real image files for the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(
    path: Path, size: int = 40, seed: int = 0, mode: str = "RGB", fmt: str | None = None
) -> Path:
    """A random-noise image (distinct per seed) saved in ``mode``/``fmt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if mode == "I;16":
        arr = rng.integers(0, 65536, (size, size), dtype=np.uint16)
        img = Image.fromarray(arr)
    elif mode == "P":
        img = rgb.quantize(colors=16)
    else:
        img = rgb.convert(mode)
    img.save(path, format=fmt)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


@pytest.fixture
def imagefolder(tmp_path: Path) -> Path:
    """3 classes x 10 distinct 40 px JPEGs."""
    root = tmp_path / "folder"
    seed = 0
    for cls in ("alpha", "beta", "gamma"):
        for i in range(10):
            write_image(root / cls / f"{i:02d}.jpg", seed=seed)
            seed += 1
    return root
