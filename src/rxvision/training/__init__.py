"""Training engine: ``fit`` (and ``fit_datasets`` for any torch datasets), hooks, callbacks,
and the run folder a pipeline resumes in (``run_key``, ``prepare_run_dir``)."""

from rxvision.training.callbacks import (
    CheckpointManager,
    EarlyStopping,
    TrainingHook,
    TrainingHookProtocol,
)
from rxvision.training.engine import (
    TrainResult,
    clear_run_dir,
    fit,
    fit_datasets,
    load_result,
    prepare_run_dir,
    run_key,
)
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
    "clear_run_dir",
    "fit",
    "fit_datasets",
    "load_result",
    "prepare_run_dir",
    "resolve_precision",
    "run_key",
]
