"""fit() on the data layer's real objects: a tiny synthetic-pill ImageFolder, the stratified
split, albumentations transforms and the model bundle written from the result."""

from __future__ import annotations

from pathlib import Path

import torch

from rxvision.config import config_from_dict
from rxvision.data import Normalization, load_source, stratified_split
from rxvision.models import load_bundle, save_bundle
from rxvision.training import fit


def test_fit_on_synthetic_pills_gives_a_bundle_ready_model(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "data": {
                "source": "synthetic",
                "cache_dir": str(tmp_path / "cache"),
                "image_size": 32,
                "synthetic": {
                    "num_classes": 3,
                    "images_per_class": 10,
                    "image_size": 48,
                    "seed": 0,
                },
                "split": {"val_fraction": 0.2, "test_fraction": 0.2},
                "loader": {"batch_size": 4, "eval_batch_size": 8, "num_workers": 0},
            },
            "model": {"backbone": "test_resnet", "pretrained": False},
            "training": {"epochs": 1, "accelerator": "cpu", "num_threads": 1},
        }
    )
    splits = stratified_split(load_source(cfg.data), cfg.data.split)
    result = fit(cfg, splits, tmp_path / "run")
    assert result.epochs_run == 1
    assert isinstance(result.normalization, Normalization) and result.normalization.image_size == 32

    info = save_bundle(
        tmp_path / "bundle",
        result.model,
        splits.classes,
        result.normalization,
        cfg,
        result.best_metrics,
        splits.fingerprint,
    )
    loaded = load_bundle(info.path)
    assert loaded.info.normalization_obj() == result.normalization
    assert loaded.info.fingerprint == splits.fingerprint
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), result.model(x))
