"""The real-data recipe itself (the demo profile pointed at an ImageFolder: full fine-tuning
of the pretrained tf_efficientnet_lite0, channels_last, warmup + cosine) on a tiny set of real
grayscale photos, in seconds: fp32 and bf16, EMA, the time budget and flip TTA at evaluation.

The photos are patches of two scikit-image textures (brick, grass), written as 8-bit
grayscale and palette PNGs, the shapes a user's scanner or phone export gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rxvision.config import load_config
from rxvision.data import (
    ImageDataset,
    apply_policy,
    build_eval_transform,
    build_loader,
    load_source,
    stratified_split,
    validate_dataset,
)
from rxvision.evaluation import predict
from rxvision.training import fit

SIDE = 48


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 patches per class; every other one saved as a palette ('P') PNG."""
    import skimage.data as skd

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("brick", "grass"):
        image = np.asarray(getattr(skd, name)())
        assert image.ndim == 2  # both samples are grayscale photos
        (root / name).mkdir()
        for i in range(40):
            y, x = rng.integers(0, image.shape[0] - 96), rng.integers(0, image.shape[1] - 96)
            patch = Image.fromarray(image[y : y + 96, x : x + 96]).resize((SIDE, SIDE))
            if i % 2:
                patch = patch.convert("P")
            patch.save(root / name / f"{i}.png")
    return root


def _run(photos: Path, tmp_path: Path, *overrides: str):
    cfg = load_config(
        "demo",
        overrides=[
            "data.source=imagefolder",
            f"data.path={photos}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.image_size=32",
            "data.validation.min_resolution=32",
            "data.split.val_fraction=0.25",
            "data.split.test_fraction=0.25",
            "data.loader.batch_size=8",
            "data.loader.num_workers=0",
            "training.epochs=6",
            "training.num_threads=1",
            *overrides,
        ],
    )
    index = load_source(cfg.data)
    index = apply_policy(index, validate_dataset(index, cfg.data.validation), cfg.data.validation)
    splits = stratified_split(index, cfg.data.split)
    result = fit(cfg, splits, tmp_path / "run")
    # the held-out photos: the recipe returns the last epoch's weights, so neither the val nor
    # the test split chose them (40 photos, not 20)
    held_out = splits.val + splits.test
    data = ImageDataset(held_out, splits.label_map, build_eval_transform(result.normalization))
    loader = build_loader(data, cfg.data.loader, train=False)
    return cfg, result, loader


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_the_recipe_learns_grayscale_and_palette_photos_in_fp32_and_bf16(
    photos: Path, tmp_path: Path, precision: str
) -> None:
    cfg, result, loader = _run(photos, tmp_path, f"training.precision={precision}")
    assert cfg.recipe == "real" and cfg.training.channels_last is True
    assert cfg.model.freeze_backbone is False and cfg.training.checkpoint.select == "last"
    values = [v for row in result.history for v in row.values()]
    assert np.isfinite(values).all()
    assert max(r["val_accuracy"] for r in result.history) >= 0.8  # brick vs grass: easy
    preds = predict(result.model, loader)
    assert preds.probs.shape == (len(loader.dataset), 2)
    assert (preds.probs.argmax(1) == preds.labels).mean() >= 0.75


def test_ema_and_a_time_budget_run_with_the_recipe(photos: Path, tmp_path: Path) -> None:
    cfg, result, _ = _run(
        photos,
        tmp_path,
        "training.ema.enabled=true",
        "training.ema.decay=0.9",
        "training.scheduler.name=cosine",
        "training.time_budget_s=3600",
    )
    rows = result.history
    assert {"ema_val_accuracy", "ema_val_macro_f1"} <= set(rows[-1])
    assert result.best_weights in ("model", "ema")
    plan = result.time_budget
    assert plan is not None and plan["budget_s"] == 3600 and plan["measured_epoch_s"] > 0
    assert plan["planned_epochs"] == cfg.training.epochs == result.epochs_run  # it all fits


def test_flip_tta_averages_the_image_and_its_mirror(photos: Path, tmp_path: Path) -> None:
    _, result, loader = _run(photos, tmp_path, "training.epochs=1")
    plain = predict(result.model, loader)
    tta = predict(result.model, loader, tta="flip")
    model = result.model.eval()
    with torch.inference_mode():
        x = torch.cat([batch[0] for batch in loader])
        logits = (model(x) + model(torch.flip(x, dims=[3]))) / 2
    np.testing.assert_allclose(tta.probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    assert not np.allclose(tta.probs, plain.probs)  # the mirror does change the answer
