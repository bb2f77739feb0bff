"""The training step: rxvision.training.fit inside a ZenML step, tracked in MLflow.

The run folder is keyed by what determines the run (config + dataset fingerprint, see
``rxvision.training.run_key``), not by the ZenML run name, so rerunning the same config on
the same data after a crash or a preemption resumes (``run.py --no-resume`` starts over).
On a remote artifact store checkpoints are copied there after every epoch and fetched back
before training. Not cached by default (a run that asks for training gets training); a run
config can switch caching on (``steps: {train_model: {enable_cache: true}}``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.client import Client
from zenml.logger import get_logger

from rxvision.data.split import DatasetSplits
from steps.common import TRAINED_BUNDLE, TRAINING_HISTORY, scalar_metrics, to_config

logger = get_logger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SYNCED = ("*.ckpt", "history.json")


def _run_dir(key: str) -> tuple[Path, str | None]:
    """Where checkpoints go: inside a local artifact store (under the state folder) directly;
    for a remote store, a local folder mirrored to the store (its URI is the second value)."""
    store = Client().active_stack.artifact_store
    remote = f"{store.path.rstrip('/')}/runs/{key}"
    if store.flavor == "local":
        return Path(remote), None
    scratch = Path(os.environ.get("RXVISION_HOME") or tempfile.gettempdir()) / "runs" / key
    return scratch, remote


class ArtifactStoreSync:
    """A picklable training hook: after each epoch, copy the run folder's checkpoints and
    history to the remote artifact store (and drop evicted top-k files there), so a preempted
    pod's rerun resumes from the last epoch."""

    def __init__(self, local: Path, remote: str) -> None:
        self.local, self.remote = Path(local), remote

    @staticmethod
    def _fileio() -> Any:
        from zenml.io import fileio

        # loading the store registers its filesystem (also in a spawned DDP rank 0)
        Client().active_stack.artifact_store  # noqa: B018
        return fileio

    def pull(self) -> None:
        fileio = self._fileio()
        if not fileio.exists(self.remote):
            return
        self.local.mkdir(parents=True, exist_ok=True)
        for name in fileio.listdir(self.remote):
            name = name.decode() if isinstance(name, bytes) else str(name)
            fileio.copy(f"{self.remote}/{name}", str(self.local / name), overwrite=True)

    def push(self) -> None:
        fileio = self._fileio()
        fileio.makedirs(self.remote)
        names = {p.name for pattern in SYNCED for p in self.local.glob(pattern)}
        for name in sorted(names, key=lambda n: n == "last.ckpt"):  # last.ckpt last
            fileio.copy(str(self.local / name), f"{self.remote}/{name}", overwrite=True)
        for name in fileio.listdir(self.remote):
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name.endswith(".ckpt") and name not in names:
                fileio.remove(f"{self.remote}/{name}")

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.push()

    def on_train_end(self, summary: dict[str, Any]) -> None: ...


@step(enable_cache=False)
def train_model(
    splits: DatasetSplits, dataset_fingerprint: str, config: dict[str, Any]
) -> tuple[Annotated[Path, TRAINED_BUNDLE], Annotated[list[dict[str, Any]], TRAINING_HISTORY]]:
    """Train (resuming an interrupted run of this config and data), keep checkpoints in the
    artifact store, and return the best model as a bundle."""
    from rxvision.models.bundle import save_bundle
    from rxvision.training import fit, prepare_run_dir, run_key
    from steps.tracking import start_tracking

    cfg = to_config(config)
    run_dir, remote = _run_dir(run_key(cfg, dataset_fingerprint))
    sync = ArtifactStoreSync(run_dir, remote) if remote else None
    if sync is not None and cfg.training.resume:
        sync.pull()
    resumed = prepare_run_dir(run_dir, resume=cfg.training.resume)
    if resumed is not None:
        logger.info(
            "resuming training from epoch %d of %d in %s (same config and data; "
            "run.py --no-resume starts over)",
            resumed.epoch,
            resumed.planned_epochs,
            run_dir,
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    hooks = [h for h in (start_tracking(config, PROJECT_ROOT), sync) if h]
    result = fit(cfg, splits, run_dir, hooks=hooks)
    history = [dict(row) for row in result.history]
    last = scalar_metrics(history[-1]) if history else {}
    bundle_dir = run_dir / "bundle"
    save_bundle(
        bundle_dir,
        result.model,
        list(splits.classes),
        result.normalization,
        cfg,
        metrics=last,
        fingerprint=dataset_fingerprint,
    )
    log_metadata(
        {
            "run_dir": remote or str(run_dir),
            "resumed_from_epoch": resumed.epoch if resumed else 0,
            **{k: v for k, v in result.summary().items() if v is not None},
            **{f"last_{k}": v for k, v in last.items()},
        }
    )
    logger.info("trained %d epoch(s); checkpoints in %s", result.epochs_run, remote or run_dir)
    return bundle_dir, history
