"""A small, quickly trained model bundle for tests, benchmarks and smoke runs of the service,
so they need neither the training pipeline nor pretrained weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from rxvision.config import ModelConfig, RxVisionConfig

log = logging.getLogger(__name__)

_PALETTE = np.array(
    [
        [220, 40, 40],
        [40, 180, 60],
        [40, 80, 220],
        [230, 200, 40],
        [200, 60, 200],
        [40, 200, 200],
        [240, 140, 30],
        [120, 120, 120],
    ],
    dtype=np.float32,
)


def toy_images(n: int, num_classes: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB uint8 images (n, size, size, 3) of a coloured disc per class on a noisy
    background, with labels; easy enough that a few optimizer steps learn them."""
    if num_classes > len(_PALETTE):
        raise ValueError(f"toy_images supports at most {len(_PALETTE)} classes")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        cy, cx = rng.uniform(0.35, 0.65, size=2) * size
        radius = rng.uniform(0.2, 0.35) * size
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2
        img = rng.normal(90, 20, size=(size, size, 3))
        img[disc] = _PALETTE[label] + rng.normal(0, 10, size=(int(disc.sum()), 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


def make_tiny_bundle(
    out_dir: Path,
    backbone: str = "test_resnet",
    image_size: int = 32,
    num_classes: int = 3,
    train_steps: int = 20,
    seed: int = 0,
) -> Path:
    """Train ``backbone`` (random init) for ``train_steps`` Adam steps on toy images and save a
    model bundle into ``out_dir``; returns ``out_dir``. ``train_steps=0`` saves it untrained."""
    from rxvision.data.transforms import Normalization, preprocess_image
    from rxvision.models import build_model, save_bundle

    torch.manual_seed(seed)
    cfg = RxVisionConfig.model_validate(
        {
            "model": ModelConfig(backbone=backbone, pretrained=False, dropout=0.0).model_dump(),
            "data": {"image_size": image_size},
        }
    )
    model = build_model(cfg.model, num_classes, load_weights=False)
    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=image_size)
    classes = [f"pill_{chr(ord('a') + i)}" for i in range(num_classes)]
    if train_steps:
        images, labels = toy_images(64, num_classes, image_size, seed=seed)
        x = torch.from_numpy(np.stack([preprocess_image(img, norm) for img in images]))
        y = torch.from_numpy(labels).long()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        gen = torch.Generator().manual_seed(seed)
        for _ in range(train_steps):
            idx = torch.randperm(len(x), generator=gen)[:16]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        log.info("tiny model trained %d steps, last loss %.3f", train_steps, float(loss.detach()))
    model.eval()
    save_bundle(
        Path(out_dir), model, classes, norm, cfg, metrics={"accuracy": 0.0}, fingerprint="toy"
    )
    return Path(out_dir)


def calibrate_tiny_bundle(bundle_dir: Path, out_dir: Path, coverage: float = 0.9) -> Path:
    """A copy of a tiny bundle with a calibration fitted on fresh toy images (what evaluation
    seals into a real bundle), so serving tests see label sets, uncertain and unknown."""
    from rxvision.calibration import calibrate
    from rxvision.calibration.fit import fit_calibration
    from rxvision.data.transforms import preprocess_image
    from rxvision.models import load_bundle, save_bundle

    loaded = load_bundle(Path(bundle_dir))
    info, norm = loaded.info, loaded.info.normalization_obj()
    images, labels = toy_images(48, info.num_classes, int(norm.image_size), seed=99)
    # a quarter of the labels wrong: the toy task is too easy to leave any doubt otherwise,
    # and the tests need a calibration under which some answers are uncertain or unknown
    rng = np.random.default_rng(99)
    flip = rng.random(len(labels)) < 0.25
    labels = np.where(flip, rng.integers(0, info.num_classes, len(labels)), labels)
    x = torch.from_numpy(np.stack([preprocess_image(img, norm) for img in images]))
    with torch.no_grad():
        logits = loaded.model.eval()(x).float().numpy()
    cal = fit_calibration(logits, labels, coverage, confidence_threshold=0.8, unknown_rate=0.1)
    answers = calibrate(logits, cal)  # the rates evaluation would record (here on the same images)
    rates = {
        "uncertain_rate": float(answers.uncertain.mean()),
        "unknown_rate": float(answers.unknown.mean()),
    }
    save_bundle(
        Path(out_dir),
        loaded.model,
        info.classes,
        info.normalization,
        info.config,
        metrics={**info.metrics, **rates},
        fingerprint=info.fingerprint,
        calibration=cal.to_dict(),
    )
    return Path(out_dir)
