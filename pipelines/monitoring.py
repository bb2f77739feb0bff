"""The monitoring pipeline: the window's served traffic against the production model
version's reference features -> Evidently drift report (shown in the dashboard) + whylogs
comparison -> decision as run and model-version metadata -> alert (the stack's alerter) ->
Prometheus gauges (rxvision_drift_status, for ops/alerts.yml).

    python run.py --pipeline monitoring [--window 24h] [--fail-on-drift] [--retrain-on-drift]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from zenml import Model, get_pipeline_context, pipeline

from pipelines import RunConfig
from pipelines.deployment import PRODUCTION, model_for
from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from rxvision.monitoring.traffic_log import parse_window, resolve_log_dir
from steps.common import DRIFT_RESULT, MODEL_NAME, REFERENCE_FEATURES, config_param
from steps.monitoring import alert_on_drift, check_drift, load_traffic
from steps.operations import export_drift_metrics
from steps.step_output import OUTPUT_HOOKS

logger = logging.getLogger(__name__)
PIPELINE_NAME = "rxvision_monitoring"
EXIT_DRIFT = 4


@pipeline(
    name=PIPELINE_NAME,
    enable_cache=False,
    model=Model(name=MODEL_NAME, version=PRODUCTION),
    **OUTPUT_HOOKS,
)
def monitoring_pipeline(
    config: RunConfig,
    window: str | None = None,
    log_dir: str | None = None,
    now: float | None = None,
) -> None:
    """The window's traffic against the pipeline's model version's reference features
    (production unless the run config's ``model:`` names another; ZenML resolves the stage
    when the run starts) -> drift report, decision, alert. Defaults come from the config."""
    reference = get_pipeline_context().model.get_artifact(REFERENCE_FEATURES)
    window = window or config.monitoring.window
    log_dir = log_dir or str(resolve_log_dir(config.serving.log_dir))
    traffic = load_traffic(log_dir, window, time.time() if now is None else now)
    _report, result, _whylogs, _profile = check_drift(reference, traffic, config_param(config))
    alert_on_drift(result)
    export_drift_metrics(result)


def production_reference(model_version: str | None = None) -> tuple[Any, Any]:
    """(model version, its reference_features artifact) of the production version (or the
    one named); a missing one is a user error saying what to run first."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    wanted = model_version or ModelStages.PRODUCTION
    try:
        mv = Client().get_model_version(MODEL_NAME, wanted)
    except KeyError:
        raise RxVisionError(
            f"no {wanted} version of the model '{MODEL_NAME}' to monitor",
            "run `python run.py --pipeline training` first "
            "(a model that passes the gate becomes production)",
        ) from None
    artifact = mv.get_artifact(REFERENCE_FEATURES)
    if artifact is None:
        raise RxVisionError(
            f"model version {mv.name} of '{MODEL_NAME}' has no '{REFERENCE_FEATURES}' artifact",
            "retrain with the current training pipeline, which stores reference features",
        )
    return mv, artifact


def run_monitoring(
    cfg: RxVisionConfig,
    window: str,
    zenml_options: dict[str, Any] | None = None,
    model_version: str | None = None,
    now: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run the pipeline on the active stack; returns (pipeline run, drift result dict)."""
    from zenml.client import Client

    from pipelines import with_run_options

    parse_window(window)  # a bad window is a one-line error before anything runs
    production_reference(model_version)  # none yet: a one-line error before anything runs
    pipe = with_run_options(monitoring_pipeline, zenml_options)
    if model_version is not None:
        pipe = pipe.with_options(model=model_for(model_version))
    run = pipe(config=cfg, window=window, now=now)
    run = Client().get_pipeline_run(run.id)
    result = run.steps["check_drift"].outputs[DRIFT_RESULT][0].load()
    return run, result


def print_summary(run: Any, result: dict[str, Any], window: str) -> None:
    """One screen: window, traffic rows, decision, drifted columns, where to look."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_row("run", run.name)
    table.add_row(
        "window", f"last {window}: {result['n_current']} rows vs {result['n_reference']} reference"
    )
    head = {
        "drift": "[bold red]DRIFT DETECTED[/]",
        "no_drift": "[green]no drift[/]",
        "not_enough_data": "[yellow]not enough data[/]",
    }[result["outcome"]]
    table.add_row("decision", head)
    table.add_row("reason", result["reason"])
    if result["drifted_columns"]:
        table.add_row("drifted columns", ", ".join(result["drifted_columns"]))
    if result.get("confidence_drop") is not None:
        table.add_row(
            "mean confidence",
            f"{result['confidence_reference']:.3f} -> {result['confidence_current']:.3f}",
        )
    table.add_row(
        "report", "ZenML dashboard: run -> check_drift -> drift_report (python run.py --dashboard)"
    )
    Console().print(Panel(table, title="RxVision monitoring", expand=False))


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point: monitor, summarise, optionally retrain, map drift to an exit code."""
    window = getattr(args, "window", None) or cfg.monitoring.window
    run, result = run_monitoring(
        cfg, window, getattr(args, "zenml_options", None), getattr(args, "model_version", None)
    )
    print_summary(run, result, window)
    if result["drifted"]:
        logger.warning("DRIFT DETECTED: %s", result["reason"])
        if getattr(args, "retrain_on_drift", False):
            from pipelines import training

            logger.warning("--retrain-on-drift: starting the training pipeline")
            code = training.main(cfg, args)
            if code:
                return code
        if getattr(args, "fail_on_drift", False):
            return EXIT_DRIFT
    return 0
