from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from rxvision.data.images import hash_files, load_rgb, to_rgb
from rxvision.errors import RxVisionError


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32768], [65535, 256]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 128], [255, 1]]


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red stays red; the rest is fully transparent
    out = np.asarray(to_rgb(Image.fromarray(rgba)))
    assert out[0, 0].tolist() == [200, 10, 10] and out[1, 1].tolist() == [255, 255, 255]


def test_palette_with_transparency_is_flattened() -> None:
    img = Image.new("P", (2, 2), 0)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    out = np.asarray(to_rgb(img))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [10, 200, 10]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (30, 10), (1, 2, 3))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_rgb(path).shape == (30, 10, 3)


def test_truncated_image_raises_instead_of_loading_grey(tmp_path: Path, make_image) -> None:
    path = make_image(tmp_path / "t.jpg", size=64)
    path.write_bytes(path.read_bytes()[:300])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(RxVisionError, match="t.jpg"):
        load_rgb(path)


def test_missing_image_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="gone.png"):
        load_rgb(tmp_path / "gone.png")


def test_hash_files_marks_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    out = hash_files([tmp_path / "a", tmp_path / "missing"])
    assert out[tmp_path / "a"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert out[tmp_path / "missing"] is None
