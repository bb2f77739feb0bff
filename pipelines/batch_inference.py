"""The batch-inference pipeline: classify a folder or CSV manifest with the production model
version, write a predictions CSV, and log features the way the service does.

    python run.py --pipeline batch-inference --input DIR_OR_CSV [--model-version V]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from zenml import Model, get_pipeline_context, pipeline

from pipelines import RunConfig
from pipelines.deployment import PRODUCTION
from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from steps.batch_inference import batch_predict
from steps.common import BATCH_SUMMARY, EMBEDDING_PROJECTOR, MODEL_BUNDLE, MODEL_NAME, config_param
from steps.step_output import OUTPUT_HOOKS

logger = logging.getLogger(__name__)
PIPELINE_NAME = "rxvision_batch_inference"


@pipeline(
    name=PIPELINE_NAME,
    enable_cache=False,
    model=Model(name=MODEL_NAME, version=PRODUCTION),
    **OUTPUT_HOOKS,
)
def batch_inference_pipeline(config: RunConfig, input_path: str, output_csv: str) -> None:
    """The pipeline's model version (production unless the run config's ``model:`` names
    another) -> its bundle and projector -> predictions CSV + traffic log."""
    model = get_pipeline_context().model
    batch_predict(
        model.get_artifact(MODEL_BUNDLE),
        model.get_artifact(EMBEDDING_PROJECTOR),
        input_path,
        output_csv,
        config_param(config),
    )


def default_output(state: Any, input_path: Path) -> Path:
    """<RXVISION_HOME>/predictions/<input name>-<UTC time>.csv"""
    home = Path(getattr(state, "home", ".rxvision"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return home / "predictions" / f"{input_path.stem or 'input'}-{stamp}.csv"


def run_batch_inference(
    cfg: RxVisionConfig,
    input_path: Path,
    output_csv: Path,
    model_version: str | None = None,
    zenml_options: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run the pipeline on the active stack; returns (pipeline run, summary dict)."""
    from zenml.client import Client

    from pipelines import with_run_options
    from pipelines.deployment import model_for, resolve_model_version
    from rxvision.serving.batch import list_inputs

    list_inputs(input_path)  # a bad --input is a one-line error before anything runs
    resolve_model_version(model_version)  # none yet: a one-line error before anything runs
    pipe = with_run_options(batch_inference_pipeline, zenml_options)
    if model_version is not None:
        pipe = pipe.with_options(model=model_for(model_version))
    run = pipe(
        config=cfg,
        input_path=str(Path(input_path).resolve()),
        output_csv=str(Path(output_csv).resolve()),
    )
    run = Client().get_pipeline_run(run.id)
    return run, run.steps["batch_predict"].outputs[BATCH_SUMMARY][0].load()


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point: needs --input; prints where the CSV is and what was found."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    if getattr(args, "input", None) is None:
        raise RxVisionError(
            "batch-inference needs --input",
            "pass an image folder or a CSV manifest: --input DIR_OR_CSV",
        )
    input_path = Path(args.input)
    run, summary = run_batch_inference(
        cfg,
        input_path,
        default_output(getattr(args, "state", None), input_path),
        getattr(args, "model_version", None),
        getattr(args, "zenml_options", None),
    )
    table = Table.grid(padding=(0, 2))
    table.add_row("run", run.name)
    table.add_row("model version", summary["model_version"])
    table.add_row("images", f"{summary['predicted']} classified, {summary['failed']} unreadable")
    if summary["accuracy"] is not None:
        table.add_row("accuracy", f"{summary['accuracy']:.3f} (labels from the manifest)")
    table.add_row(
        "class mix", ", ".join(f"{k}: {v}" for k, v in sorted(summary["class_counts"].items()))
    )
    table.add_row("traffic log", f"{summary['logged_rows']} rows logged for monitoring")
    table.add_row("predictions", f"[bold]{summary['output_csv']}[/]")
    Console().print(Panel(table, title="RxVision batch inference", expand=False))
    return 0
