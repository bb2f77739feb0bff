"""The tuning step: an Optuna study over rxvision.training.fit (rxvision.tuning), its best
trial as a run config and Optuna's plots as HTML the dashboard shows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.data.split import DatasetSplits
from steps.common import BEST_CONFIG, STUDY_SUMMARY, TUNING_PLOTS, to_config

logger = get_logger(__name__)
OPTIMIZATION_HISTORY, PARAM_IMPORTANCES, PARALLEL_COORDINATES = TUNING_PLOTS


@step(enable_cache=False)
def tune_hyperparameters(
    splits: DatasetSplits, config: dict[str, Any]
) -> tuple[
    Annotated[dict[str, Any], STUDY_SUMMARY],
    Annotated[str, BEST_CONFIG],
    Annotated[HTMLString, OPTIMIZATION_HISTORY],
    Annotated[HTMLString, PARAM_IMPORTANCES],
    Annotated[HTMLString, PARALLEL_COORDINATES],
]:
    """Add trials to the study (train/val only), then report the study as it stands."""
    from rxvision.tuning import best_config_yaml, open_study, run_study, storage_url, study_plots

    cfg = to_config(config)
    home = Path(os.environ.get("RXVISION_HOME") or tempfile.gettempdir())
    url = storage_url(cfg.tuning, home)
    outcome = run_study(cfg, splits, home / "runs" / "tuning", url).to_dict()
    plots = study_plots(open_study(cfg.tuning, url))
    states = [t["state"] for t in outcome["trials"] if t["number"] in outcome["new_trials"]]
    log_metadata(
        {
            "study_name": outcome["study_name"],
            "storage": outcome["storage"],
            "metric": outcome["metric"],
            "best_trial": outcome["best"]["number"],
            "best_value": outcome["best"]["value"],
            "best_params": outcome["best"]["params"],
            "trials_in_study": len(outcome["trials"]),
            "trials_this_run": len(states),
            **{f"{s}_this_run": states.count(s) for s in ("complete", "pruned", "fail")},
        }
    )
    logger.info(
        "study %s: best trial %d, %s %.4f",
        outcome["study_name"],
        outcome["best"]["number"],
        outcome["metric"],
        outcome["best"]["value"],
    )
    return (
        outcome,
        best_config_yaml(cfg, outcome),
        *(HTMLString(plots[name]) for name in TUNING_PLOTS),
    )
