"""The training step: rxvision.training.fit inside a ZenML step, tracked in MLflow.

Not cached by default (a run that asks for training gets training); a run config can switch
caching on for it (``steps: {train_model: {enable_cache: true}}``). ``training.devices: N``
makes ``fit`` spawn N DDP processes inside this step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.logger import get_logger

from rxvision.data.split import DatasetSplits
from steps.common import TRAINED_BUNDLE, TRAINING_HISTORY, scalar_metrics, to_config

logger = get_logger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _run_dir(run_name: str) -> tuple[Path, str | None]:
    """Where checkpoints go: inside a local artifact store directly; for a remote store, a
    local scratch folder that is uploaded afterwards (returned as the second value)."""
    store = Client().active_stack.artifact_store
    remote = f"{store.path.rstrip('/')}/runs/{run_name}"
    if store.flavor == "local":
        return Path(remote), None
    return Path(tempfile.mkdtemp(prefix=f"rxvision-{run_name}-")), remote


def _upload(local: Path, remote: str) -> None:
    """Copy a local folder into the (remote) artifact store, file by file."""
    from zenml.io import fileio

    for path in local.rglob("*"):
        if path.is_file():
            target = f"{remote}/{path.relative_to(local).as_posix()}"
            fileio.makedirs(target.rsplit("/", 1)[0])
            fileio.copy(str(path), target, overwrite=True)


@step(enable_cache=False)
def train_model(
    splits: DatasetSplits, dataset_fingerprint: str, config: dict[str, Any]
) -> tuple[Annotated[Path, TRAINED_BUNDLE], Annotated[list[dict[str, Any]], TRAINING_HISTORY]]:
    """Train, keep checkpoints in the artifact store, and return the best model as a bundle."""
    from rxvision.models.bundle import save_bundle
    from rxvision.training import fit
    from steps.tracking import start_tracking

    cfg = to_config(config)
    run_name = get_step_context().pipeline_run.name
    run_dir, upload_to = _run_dir(run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    hook = start_tracking(config, PROJECT_ROOT)
    result = fit(cfg, splits, run_dir, hooks=[hook] if hook else [])
    history = [dict(row) for row in result.history]
    last = scalar_metrics(history[-1]) if history else {}
    bundle_dir = run_dir / "bundle"
    save_bundle(bundle_dir, result.model, list(splits.classes), result.normalization, cfg,
                metrics=last, fingerprint=dataset_fingerprint)
    if upload_to:
        _upload(run_dir, upload_to)
    log_metadata({"epochs_run": int(result.epochs_run), "stopped_early": bool(result.stopped_early),
                  "run_dir": upload_to or str(run_dir), "best_checkpoint": str(result.best_checkpoint),
                  **{f"last_{k}": v for k, v in last.items()}})
    logger.info("trained %d epoch(s); checkpoints in %s", result.epochs_run, upload_to or run_dir)
    return bundle_dir, history
