from __future__ import annotations

import numpy as np
import pytest
import torch

from rxvision.config import DataConfig
from rxvision.data.transforms import (
    Normalization,
    build_eval_transform,
    build_train_transform,
    preprocess_image,
)
from rxvision.errors import RxVisionError


@pytest.mark.parametrize("shape", [(64, 64), (100, 80), (50, 200), (333, 97), (31, 33)])
@pytest.mark.parametrize(
    "interpolation,crop_pct", [("bilinear", 1.0), ("bicubic", 0.875), ("area", 0.9)]
)
def test_preprocess_image_matches_the_eval_transform(shape, interpolation, crop_pct) -> None:
    norm = Normalization(
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        image_size=48,
        interpolation=interpolation,
        crop_pct=crop_pct,
    )
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = build_eval_transform(norm)(image=img)["image"].numpy()
    got = preprocess_image(img, norm)
    assert got.dtype == np.float32 and got.shape == (3, 48, 48)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_eval_transform_normalizes_with_the_given_mean_and_std() -> None:
    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=32)
    white = np.full((32, 32, 3), 255, np.uint8)
    out = build_eval_transform(norm)(image=white)["image"]
    assert torch.allclose(out, torch.ones_like(out))


def test_train_transform_outputs_tensor_and_repeats_with_a_seed() -> None:
    norm = Normalization(image_size=40)
    img = np.random.default_rng(1).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    a = build_train_transform(DataConfig(), norm, seed=5)(image=img)["image"]
    t = build_train_transform(DataConfig(), norm, seed=5)
    b = t(image=img)["image"]
    c = t(image=img)["image"]
    assert a.shape == (3, 40, 40) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_train_transform_follows_augmentation_config() -> None:
    cfg = DataConfig.model_validate(
        {
            "augmentation": {
                "hflip": 0,
                "vflip": 0,
                "rotate90": 0,
                "affine": 0,
                "color_jitter": 0,
                "scale_min": 1.0,
            }
        }
    )
    norm = Normalization(image_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = build_train_transform(cfg, norm, seed=0)(image=img)["image"]
    # nothing random left on: a full-size crop of a square image is the image itself
    np.testing.assert_allclose(out.numpy(), img.transpose(2, 0, 1) / 255.0, atol=1e-6)


def _stripes(side: int) -> np.ndarray:
    """1-pixel black and white columns: detail far finer than any model input resolves."""
    img = np.zeros((side, side, 3), np.uint8)
    img[:, ::2] = 255
    return img


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_shrinking_averages_detail_instead_of_aliasing_it(interpolation) -> None:
    img = _stripes(300)  # 300 -> 128 px: 2.3 source pixels per output pixel
    on = Normalization(image_size=128, interpolation=interpolation, mean=(0,) * 3, std=(1,) * 3)
    off = Normalization(**{**on.to_dict(), "antialias": False})
    smooth = preprocess_image(img, on)
    aliased = preprocess_image(img, off)
    # area averaging turns the stripes into flat mid-grey; a kernel samples them into moire
    assert abs(smooth.mean() - 0.5) < 0.02 and smooth.std() < 0.1
    assert aliased.std() > 3 * smooth.std()
    for norm in (on, off):  # training and serving shrink alike, with the option on or off
        np.testing.assert_allclose(
            build_eval_transform(norm)(image=img)["image"].numpy(),
            preprocess_image(img, norm),
            atol=1e-5,
        )


def test_training_frames_a_large_photo_as_evaluation_does() -> None:
    cfg = DataConfig.model_validate({"augmentation": {"preset": "none"}})
    norm = Normalization(image_size=40)
    img = np.random.default_rng(3).integers(0, 256, (150, 110, 3), dtype=np.uint8)
    train = build_train_transform(cfg, norm, seed=0)(image=img)["image"]
    np.testing.assert_allclose(train.numpy(), preprocess_image(img, norm), atol=1e-5)


def test_bundles_saved_before_antialias_keep_their_preprocessing() -> None:
    old = {"mean": [0.5] * 3, "std": [0.5] * 3, "image_size": 64, "interpolation": "bicubic"}
    assert Normalization.from_dict(old).antialias is False
    assert Normalization.from_dict(Normalization().to_dict()).antialias is True


def test_normalization_round_trips_and_rejects_bad_values() -> None:
    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=96, crop_pct=0.875)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(RxVisionError, match="interpolation"):
        Normalization(interpolation="fancy")
    with pytest.raises(RxVisionError, match="std"):
        Normalization(std=(0.0, 1.0, 1.0))


def test_preprocess_image_rejects_non_rgb_arrays() -> None:
    with pytest.raises(RxVisionError, match="HxWx3 uint8"):
        preprocess_image(np.zeros((10, 10), np.uint8), Normalization())


@pytest.mark.parametrize("shape", [(1, 100_000), (100_000, 2), (5, 300)])
def test_long_thin_images_resize_only_the_center_span(shape) -> None:
    # the full resize of 1 x 100,000 px to a 146 px short side would be 14.6 M px x 3 bytes
    norm = Normalization(image_size=128, crop_pct=0.875)
    ramp = np.linspace(0, 255, max(shape)).astype(np.uint8)  # smooth along the long side
    img = np.zeros((*shape, 3), np.uint8)
    img[..., 0] = ramp[:, None] if shape[0] > shape[1] else ramp[None, :]
    got = preprocess_image(img, norm)
    assert got.shape == (3, 128, 128) and np.isfinite(got).all()
    if max(shape) <= 300:  # small enough for the full reference resize
        expected = build_eval_transform(norm)(image=img)["image"].numpy()
        assert np.abs(got - expected).mean() < 0.05
