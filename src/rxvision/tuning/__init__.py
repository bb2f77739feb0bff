"""Hyperparameter tuning with Optuna: a search space over config keys, one training run per
trial scored on the validation split, pruning between epochs, the study in a database, and
the best trial as a run config plus Optuna's plots."""

from rxvision.tuning.report import best_config_yaml, best_run_config, study_plots
from rxvision.tuning.space import (
    AUGMENTATION_STRENGTH,
    Param,
    apply_params,
    parse_space,
    scale_augmentation,
)
from rxvision.tuning.study import (
    PruningHook,
    StudyOutcome,
    masked,
    open_study,
    run_study,
    storage_url,
)

__all__ = [
    "AUGMENTATION_STRENGTH",
    "Param",
    "PruningHook",
    "StudyOutcome",
    "apply_params",
    "best_config_yaml",
    "best_run_config",
    "masked",
    "open_study",
    "parse_space",
    "run_study",
    "scale_augmentation",
    "storage_url",
    "study_plots",
]
