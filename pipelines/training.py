"""The training pipeline: data -> validation -> split -> train -> evaluate -> reference
features -> quality gate -> registration, on whatever ZenML stack is active.

    python run.py --pipeline training [--set key=value ...] [--fail-on-gate]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from zenml import Model, pipeline
from zenml.enums import ExecutionMode, StackComponentType

from pipelines import RunConfig
from rxvision.config import RxVisionConfig
from steps.common import (
    DATASET_FINGERPRINT,
    GATE_DECISION,
    MODEL_NAME,
    REGISTRATION,
    VALIDATION_REPORT,
    active_component_name,
    config_param,
)
from steps.data import load_data, profile_data, split_data, validate_data
from steps.evaluation import evaluate_model
from steps.reference import reference_features
from steps.registration import quality_gate, register_model
from steps.step_output import OUTPUT_HOOKS
from steps.training import train_model

logger = logging.getLogger(__name__)
EXIT_GATE_REJECTED = 3
PIPELINE_NAME = "rxvision_training"


def model_definition() -> Model:
    """The ZenML model every run adds a version to."""
    return Model(
        name=MODEL_NAME,
        description="Pill image classifier (RxVision): a timm backbone fine-tuned on pill images.",
        license="Apache-2.0",
        tags=["rxvision", "image-classification"],
    )


@pipeline(
    name=PIPELINE_NAME,
    model=model_definition(),
    execution_mode=ExecutionMode.FAIL_FAST,
    **OUTPUT_HOOKS,
)
def training_pipeline(config: RunConfig) -> None:
    """The steps in order; the experiment tracker is the active stack's (if it has one).
    Steps take the config (or its data section) as a JSON mapping: shown in the dashboard and
    part of their cache keys."""
    tracker = active_component_name(StackComponentType.EXPERIMENT_TRACKER)
    tracked = {"experiment_tracker": tracker} if tracker else {}
    data = config.data.model_dump(mode="json")
    config = config_param(config)
    index, fingerprint = load_data(data)
    clean, _report, _html = validate_data(index, fingerprint, data)
    profile_data(clean, fingerprint, data)
    splits, test_fp = split_data(clean, fingerprint, data)
    bundle, history = train_model.with_options(**tracked)(splits, fingerprint, config)
    final, evaluation, _eval_html, _plots, heldout = evaluate_model.with_options(**tracked)(
        bundle, splits, history, test_fp, config
    )
    reference_features(final, heldout, splits, config)
    decision = quality_gate(evaluation, test_fp, splits, config)
    register_model.with_options(**tracked)(
        decision, final, evaluation, fingerprint, test_fp, config
    )


def run_training(cfg: RxVisionConfig, zenml_options: dict[str, Any] | None = None) -> Any:
    """Run the pipeline on the active stack and return the ZenML pipeline run."""
    from pipelines import call_pipeline, with_run_options

    return call_pipeline(with_run_options(training_pipeline, zenml_options), config=cfg)


def compile_training(
    cfg: RxVisionConfig, zenml_options: dict[str, Any] | None, stack_name: str
) -> Any:
    """Compile the pipeline for a registered stack without running it: step settings,
    component references and the stack's setting keys are checked (no cluster needed)."""
    import os

    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.stack import Stack

    stack_model = Client().get_stack(stack_name, allow_name_prefix_match=False)
    saved = os.environ.get("ZENML_ACTIVE_STACK_ID")
    os.environ["ZENML_ACTIVE_STACK_ID"] = str(stack_model.id)
    try:
        pipe = training_pipeline.copy()
        pipe.prepare(config=cfg)
        run_config = PipelineRunConfiguration.model_validate(zenml_options or {})
        return Compiler().compile(
            pipeline=pipe, stack=Stack.from_model(stack_model), run_configuration=run_config
        )
    finally:
        if saved is None:
            os.environ.pop("ZENML_ACTIVE_STACK_ID", None)
        else:
            os.environ["ZENML_ACTIVE_STACK_ID"] = saved


def run_outputs(run: Any) -> dict[str, Any]:
    """What the summary shows, read back from the finished run's artifacts."""
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    steps = run.steps
    return {
        "run_name": run.name,
        "status": str(run.status),
        "fingerprint": steps["load_data"].outputs[DATASET_FINGERPRINT][0].load(),
        "validation": steps["validate_data"].outputs[VALIDATION_REPORT][0].load(),
        "gate": steps["quality_gate"].outputs[GATE_DECISION][0].load(),
        "registration": steps["register_model"].outputs[REGISTRATION][0].load(),
    }


HEADLINE = ("accuracy", "macro_f1", "ece", "coverage", "mean_set_size")


def _with_interval(metrics: dict[str, Any], key: str) -> str:
    """``accuracy 0.9850 [0.9700, 0.9950]`` where the evaluation computed an interval."""
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    return f"{key} {metrics[key]:.4f}{interval}"


def print_summary(out: dict[str, Any], dashboard: str) -> None:
    """One screen: dataset, validation, metrics, gate, model version + stage, dashboard."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    reg, val = out["registration"], out["validation"]
    table = Table.grid(padding=(0, 2))
    table.add_row("run", out["run_name"])
    table.add_row("dataset fingerprint", out["fingerprint"][:16])
    excluded = val.get("excluded") or []
    table.add_row(
        "validation",
        f"{'passed' if val.get('passed') else 'problems found'}"
        f"{f', {len(excluded)} file(s) excluded' if excluded else ''}",
    )
    m = reg.get("metrics", {})
    for i, key in enumerate(k for k in HEADLINE if k in m):  # one metric a line: no wrapping
        table.add_row("test metrics" if i == 0 else "", _with_interval(m, key))
    table.add_row("quality gate", reg["stage"] or "REJECTED")
    for reason in reg["reasons"]:
        table.add_row("", reason)
    table.add_row(
        "model", f"{reg['model']} version {reg['version']} -> {reg['stage'] or 'no stage'}"
    )
    if reg.get("mlflow"):
        m = reg["mlflow"]
        table.add_row(
            "mlflow",
            f"run {m['run_id'][:12]}, registered version {m['version']}"
            f"{', alias ' + m['alias'] if m.get('alias') else ''}",
        )
    table.add_row("dashboard", dashboard)
    Console().print(Panel(table, title="RxVision training", expand=False))


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point: run, summarise, and map a rejected model to an exit code."""
    from stacks.setup import dashboard_command

    run = run_training(cfg, getattr(args, "zenml_options", None))
    out = run_outputs(run)
    print_summary(
        out, f"python run.py --dashboard   (or: {dashboard_command(getattr(args, 'state', None))})"
    )
    if out["registration"]["stage"] is None and getattr(args, "fail_on_gate", False):
        failed = [r["message"] for r in out["gate"]["rules"] if r["passed"] is False]
        logger.error("quality gate rejected the model: %s", "; ".join(failed))
        return EXIT_GATE_REJECTED
    return 0
