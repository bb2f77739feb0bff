"""Config overrides of the tiny training runs the integration tier and the pipeline benchmark
share: small enough for 2 contended CPU cores (3 classes, 32 px, a few images each)."""

from __future__ import annotations

TINY_OVERRIDES: tuple[str, ...] = (
    "data.synthetic.num_classes=3",
    "data.synthetic.images_per_class=16",
    "data.synthetic.image_size=48",
    "data.image_size=32",
    "data.loader.batch_size=8",
    "data.loader.eval_batch_size=16",
    "data.loader.num_workers=0",
    "data.loader.pin_memory=false",
    "data.loader.persistent_workers=false",
    "data.split.val_fraction=0.25",
    "data.split.test_fraction=0.25",
    "data.validation.min_resolution=16",
    "data.validation.min_images_per_class=2",
    "training.epochs=2",
    "training.num_threads=1",
    "training.early_stopping.enabled=false",
    "evaluation.bootstrap_samples=0",
    "gate.min_accuracy=0.0",
    "gate.min_macro_f1=0.0",
    "gate.max_ece=1.0",
    "export.profile_iterations=1",
    "export.profile_batch_sizes=[1]",
    "monitoring.min_rows=5",
)
