"""The tuning pipeline: data -> validation -> split -> an Optuna study of training runs scored
on the validation split. It ends with the best trial written as a run config for the
training pipeline (which then evaluates it on the untouched test split and gates it).

    python run.py --pipeline tuning --config configs/tuning.yaml [--set tuning.n_trials=5]
    zenml pipeline run pipelines.tuning.tuning_pipeline -c configs/tuning.yaml
        (after: eval "$(python run.py --env)"; the file is a ZenML run config, see pipelines)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from zenml import pipeline
from zenml.enums import ExecutionMode

from pipelines import RunConfig
from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from steps.common import BEST_CONFIG, STUDY_SUMMARY, TUNING_PLOTS, config_param
from steps.data import load_data, split_data, validate_data
from steps.step_output import OUTPUT_HOOKS
from steps.tuning import tune_hyperparameters

logger = logging.getLogger(__name__)
PIPELINE_NAME = "rxvision_tuning"


@pipeline(name=PIPELINE_NAME, execution_mode=ExecutionMode.FAIL_FAST, **OUTPUT_HOOKS)
def tuning_pipeline(config: RunConfig) -> None:
    """The training pipeline's data steps, then the study. Steps take the config as a JSON
    mapping, like the training pipeline's. The checks run here, while the pipeline is composed
    on this machine, so `zenml pipeline run ... -c` gets them too: a bad search space or a
    study that the stack would lose fails before any step runs."""
    from rxvision.tuning import parse_space

    parse_space(config)
    check_storage(config)
    data = config.data.model_dump(mode="json")
    index, fingerprint = load_data(data)
    clean, _report, _html = validate_data(index, fingerprint, data)
    splits, _test_fp = split_data(clean, fingerprint, data)
    tune_hyperparameters(splits, config_param(config))


def check_storage(cfg: RxVisionConfig) -> None:
    """The default SQLite file lives on this machine: trials that run elsewhere (pods) would
    each write a study of their own and lose it, so they need a shared database URL."""
    from zenml.client import Client

    flavor = Client().active_stack.orchestrator.flavor
    if cfg.tuning.storage is None and flavor != "local":
        raise RxVisionError(
            f"the active stack's orchestrator ({flavor}) runs the trials off this machine, "
            "where the default SQLite study would be lost",
            "set tuning.storage to a database URL the pods reach, e.g. "
            "postgresql://optuna:${OPTUNA_DB_PASSWORD}@optuna-db:5432/optuna "
            "(docs/operations.md)",
        )


def run_tuning(cfg: RxVisionConfig, zenml_options: dict[str, Any] | None = None) -> Any:
    """Run the pipeline on the active stack and return the ZenML pipeline run."""
    from pipelines import call_pipeline, with_run_options

    return call_pipeline(with_run_options(tuning_pipeline, zenml_options), config=cfg)


def run_outputs(run: Any) -> dict[str, Any]:
    """The study summary, best config text and plots, read back from the run's artifacts."""
    from zenml.client import Client

    outputs = Client().get_pipeline_run(run.id).steps["tune_hyperparameters"].outputs
    return {
        "run_name": run.name,
        "summary": outputs[STUDY_SUMMARY][0].load(),
        "best_config": outputs[BEST_CONFIG][0].load(),
        "plots": {name: str(outputs[name][0].load()) for name in TUNING_PLOTS},
    }


def write_results(out: dict[str, Any], folder: Path, best_config: Path | None) -> dict[str, Path]:
    """The best run config and the plots as files on this machine."""
    folder.mkdir(parents=True, exist_ok=True)
    target = best_config or folder / "best.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(out["best_config"])
    files = {"best_config": target}
    for name, page in out["plots"].items():
        files[name] = folder / f"{name}.html"
        files[name].write_text(page)
    return files


def print_summary(out: dict[str, Any], files: dict[str, Path]) -> None:
    """One screen: the study, this run's trials, the best trial and what to run next."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    s = out["summary"]
    new = [t for t in s["trials"] if t["number"] in s["new_trials"]]
    counts = {
        state: sum(t["state"] == state for t in s["trials"])
        for state in ("complete", "pruned", "fail")
    }
    table = Table.grid(padding=(0, 2))
    table.add_row("run", out["run_name"])
    table.add_row("study", f"{s['study_name']} in {s['storage']}")
    table.add_row("objective", f"{s['direction']} {s['metric']} (validation split)")
    table.add_row("this run", f"{len(new)} trial(s) in {s['elapsed_s']:.0f} s")
    for t in new:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        table.add_row(
            "",
            f"#{t['number']} {t['state']} after {t['epochs']} epoch(s): {value}"
            + (f" ({t['error'].splitlines()[0]})" if t["error"] else ""),
        )
    table.add_row(
        "study total",
        f"{len(s['trials'])} trials: " + ", ".join(f"{n} {state}" for state, n in counts.items()),
    )
    best = s["best"]
    table.add_row("best trial", f"#{best['number']}: {s['metric']} {best['value']:.4f}")
    for key, value in best["params"].items():
        table.add_row(
            "", f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
        )
    table.add_row("best config", str(files["best_config"]))
    table.add_row("plots", str(files["optimization_history"].parent))
    table.add_row("next", f"python run.py --pipeline training --config {files['best_config']}")
    Console().print(Panel(table, title="RxVision tuning", expand=False))


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point: run the study, write the best config and plots, summarise."""
    from stacks.setup import resolve_home

    home = args.state.home if getattr(args, "state", None) else resolve_home()
    run = run_tuning(cfg, getattr(args, "zenml_options", None))
    out = run_outputs(run)
    files = write_results(
        out, home / "tuning" / cfg.tuning.study_name, getattr(args, "best_config", None)
    )
    print_summary(out, files)
    return 0
