"""Small real data for the engine tests: colour-coded 16 px images a tiny CNN learns in an
epoch or two."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from rxvision.config import RxVisionConfig, config_from_dict

TINY_BACKBONE = "test_resnet"


def colour_dataset(n: int, num_classes: int = 3, size: int = 16, seed: int = 0) -> TensorDataset:
    """Class k has a bright channel k (mod 3) plus a class-specific stripe; noise elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.randn(n, 3, size, size, generator=gen) * 0.3
    for k in range(num_classes):
        x[y == k, k % 3] += 1.5
        x[y == k, :, (k * 3) % size, :] += 1.0
    return TensorDataset(x, y)


def tiny_config(**training: Any) -> RxVisionConfig:
    model = training.pop("model", {})
    loader = training.pop("loader", {})
    return config_from_dict(
        {
            "model": {"backbone": TINY_BACKBONE, "pretrained": False, "dropout": 0.0, **model},
            "data": {
                "image_size": 32,
                "loader": {"batch_size": 8, "eval_batch_size": 16, "num_workers": 0, **loader},
            },
            "training": {
                "epochs": 2,
                "precision": "32",
                "accelerator": "cpu",
                "num_threads": 1,
                "optimizer": {"lr": 3e-3},
                **training,
            },
        }
    )
