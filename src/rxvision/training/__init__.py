"""Training engine: ``fit`` (and ``fit_datasets`` for any torch datasets), hooks, callbacks."""

from rxvision.training.callbacks import (
    CheckpointManager,
    EarlyStopping,
    TrainingHook,
    TrainingHookProtocol,
)
from rxvision.training.engine import TrainResult, fit, fit_datasets, load_result
from rxvision.training.setup import (
    balanced_class_weights,
    build_mixup,
    build_optimizer,
    build_scheduler,
    resolve_precision,
)

__all__ = [
    "CheckpointManager",
    "EarlyStopping",
    "TrainResult",
    "TrainingHook",
    "TrainingHookProtocol",
    "balanced_class_weights",
    "build_mixup",
    "build_optimizer",
    "build_scheduler",
    "fit",
    "fit_datasets",
    "load_result",
    "resolve_precision",
]
