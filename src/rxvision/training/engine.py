"""The training engine's public API: ``fit`` on dataset splits (or ``fit_datasets`` on any
torch datasets) into a run folder, the launcher (one process, N spawned DDP processes, or one
rank of a torchrun / PyTorchJob launch) and the result read back from the folder. The loop is
in loop.py, checkpoints in checkpoint.py, processes in distributed.py, loaders in loaders.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from rxvision.models import RxVisionClassifier, build_model
from rxvision.training import distributed as ddp
from rxvision.training.callbacks import LAST_CKPT, TrainingHookProtocol, check_monitor
from rxvision.training.checkpoint import LoopState, check_resumable, read_last
from rxvision.training.loaders import dataset_labels
from rxvision.training.loop import Job, Trainer
from rxvision.training.setup import (
    balanced_class_weights,
    check_devices,
    config_digest,
    resolve_device_type,
    resolve_precision,
    threads_per_process,
)

log = logging.getLogger(__name__)

RUN_FILES = ("*.ckpt", ".*.ckpt.tmp", "history.json", ".rank*.error")


@dataclass
class TrainResult:
    """What fit returns: the best checkpoint's model (CPU, eval mode) and the run's record."""

    model: RxVisionClassifier
    history: list[dict[str, float]]
    best_checkpoint: Path | None
    epochs_run: int
    stopped_early: bool
    normalization: Any = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    # which weights of the best checkpoint the model holds: "model" or "ema"
    best_weights: str = "model"
    planned_epochs: int | None = None
    # the time budget's plan ({"budget_s", "measured_epoch_s", "planned_epochs"}) if one was set
    time_budget: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "planned_epochs": self.planned_epochs,
            "stopped_early": self.stopped_early,
            "best_weights": self.best_weights,
            **({"time_budget": self.time_budget} if self.time_budget else {}),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            **{f"best_{k}": v for k, v in self.best_metrics.items()},
        }


# ----------------------------------------------------------------------- public API
def fit(
    cfg: RxVisionConfig, splits: Any, run_dir: Path, hooks: Sequence[TrainingHookProtocol] = ()
) -> TrainResult:
    """Train on ``splits`` (rxvision.data.DatasetSplits) into ``run_dir``; re-running into the
    same run_dir resumes from last.ckpt (a finished run is returned without training)."""
    from rxvision.data.loader import ImageDataset
    from rxvision.data.transforms import build_eval_transform, build_train_transform
    from rxvision.models import normalization_for

    if not splits.train or not splits.val:
        raise RxVisionError(
            "training needs non-empty train and val splits", "check data.split fractions"
        )
    norm = normalization_for(cfg.model, cfg.data.image_size)
    label_map = splits.label_map
    train_set = ImageDataset(
        splits.train, label_map, build_train_transform(cfg.data, norm, seed=cfg.training.seed)
    )
    val_set = ImageDataset(splits.val, label_map, build_eval_transform(norm))
    return fit_datasets(
        cfg,
        train_set,
        val_set,
        list(splits.classes),
        run_dir,
        hooks,
        normalization=norm,
        train_labels=train_set.targets,
    )


def fit_datasets(
    cfg: RxVisionConfig,
    train_set: Dataset,
    val_set: Dataset,
    classes: Sequence[str],
    run_dir: Path,
    hooks: Sequence[TrainingHookProtocol] = (),
    normalization: Any = None,
    train_labels: Sequence[int] | None = None,
) -> TrainResult:
    """fit() on any map-style datasets yielding (CHW float tensor, int label)."""
    tcfg = cfg.training
    run_dir = Path(run_dir)
    device_type = resolve_device_type(tcfg)
    resolve_precision(tcfg, device_type)  # raises early (fp16 on CPU, ...)
    check_devices(tcfg, device_type)
    check_monitor(tcfg.checkpoint.monitor, "training.checkpoint")
    if tcfg.early_stopping.enabled:
        check_monitor(tcfg.early_stopping.monitor, "training.early_stopping")
    if len(train_set) == 0 or len(val_set) == 0:  # type: ignore[arg-type]
        raise RxVisionError(
            "training needs non-empty train and val datasets", "check the data split"
        )
    if len(train_set) < tcfg.devices:  # type: ignore[arg-type]
        raise RxVisionError(
            f"{len(train_set)} training images cannot feed {tcfg.devices} processes"
        )  # type: ignore[arg-type]
    labels = list(train_labels) if train_labels is not None else None
    if labels is None and (tcfg.class_weights != "none" or tcfg.sampler == "balanced"):
        labels = dataset_labels(train_set)
    if tcfg.class_weights == "balanced":
        balanced_class_weights(labels or [], len(classes))  # raises early on empty classes
    run_dir.mkdir(parents=True, exist_ok=True)
    if not tcfg.resume:
        clear_run_dir(run_dir)
    _launch(Job(cfg, train_set, val_set, list(classes), run_dir, tuple(hooks), labels))
    return load_result(run_dir, cfg, len(classes), normalization)


def run_key(cfg: RxVisionConfig, dataset_fingerprint: str) -> str:
    """A name for the run folder that depends only on what determines the run (the data,
    model and training sections of the config and the dataset's fingerprint), so rerunning
    the same config on the same data finds, and resumes, the interrupted run."""
    sections = cfg.model_dump(mode="json", include={"data", "model", "training"})
    training, data = sections["training"], sections["data"]
    for key in ("resume", "num_threads"):  # how to run, not what is trained
        training.pop(key, None)
    for key in ("path", "cache_dir"):
        data.pop(key, None)
    loader = data.get("loader", {})
    for key in ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor"):
        loader.pop(key, None)
    text = json.dumps({"config": sections, "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clear_run_dir(run_dir: Path) -> None:
    """Remove a run folder's checkpoints and history (a fresh start in the same folder)."""
    for pattern in RUN_FILES:
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)


def prepare_run_dir(run_dir: Path, resume: bool = True) -> LoopState | None:
    """Get a pipeline's run folder ready: the state an interrupted run resumes from, or None
    for a fresh start (resume=False, no checkpoint yet, or a finished run: asking for
    training again trains again)."""
    state = read_last(run_dir) if resume else None
    if state is None or state.finished:
        clear_run_dir(run_dir)
        return None
    return state


def load_result(
    run_dir: Path, cfg: RxVisionConfig, num_classes: int, normalization: Any = None
) -> TrainResult:
    """The TrainResult of a run folder: history from last.ckpt, the model from the best one
    (its EMA weights where those scored better)."""
    last = Path(run_dir) / LAST_CKPT
    state = read_last(run_dir)
    if state is None:
        raise RxVisionError(f"{run_dir} holds no {LAST_CKPT}", "train into this folder first")
    kept = state.checkpoints["kept"]
    best = Path(run_dir) / kept[0]["file"] if kept else last
    weights = kept[0].get("weights", "model") if kept else "model"
    best_state = state if best == last else LoopState.load(best)
    model = build_model(cfg.model, num_classes, load_weights=False)
    if cfg.model.freeze_backbone:
        model.set_backbone_trainable(True)
    sd = best_state.ema if weights == "ema" and best_state.ema is not None else best_state.model
    model.load_state_dict(sd)
    model.eval()
    best_row = next((r for r in state.history if r["epoch"] == best_state.epoch), {})
    return TrainResult(
        model=model,
        history=list(state.history),
        best_checkpoint=best,
        epochs_run=int(state.epoch),
        stopped_early=bool(state.stopped_early),
        normalization=normalization,
        best_metrics={k: v for k, v in best_row.items() if k != "epoch"},
        run_dir=Path(run_dir),
        best_weights=weights,
        planned_epochs=int(state.planned_epochs),
        time_budget=dict(state.time_budget) if state.time_budget else None,
    )


# ------------------------------------------------------------------------ processes
def _launch(job: Job) -> None:
    """torchrun / PyTorchJob when their variables are set (this process is one rank), else
    ``devices`` processes spawned here, else this process alone."""
    rv = ddp.from_environment()
    devices = job.cfg.training.devices
    if rv is not None:
        if rv.rank == 0 and rv.world != devices:
            log.info("torchrun world size %d overrides training.devices=%d", rv.world, devices)
        train_process(rv, job)
    elif devices > 1:
        try:
            pickle.dumps(job.hooks)
        except Exception as exc:  # noqa: BLE001
            raise RxVisionError(
                f"training hooks must be picklable for devices > 1: {exc}"
            ) from None
        ddp.spawn(train_process, devices, (job,), job.run_dir)
    else:
        train_process(ddp.Rendezvous(0, 1, 0, None), job)


def train_process(rv: ddp.Rendezvous, job: Job) -> None:
    """One rank of the run: device, threads and process group around a Trainer."""
    tcfg = job.cfg.training
    device_type = resolve_device_type(tcfg)
    precision = resolve_precision(tcfg, device_type)
    device = (
        torch.device(device_type, rv.local_rank) if device_type == "cuda" else torch.device("cpu")
    )
    if device_type == "cuda":
        torch.cuda.set_device(device)
    on_node = (
        int(os.environ.get("LOCAL_WORLD_SIZE", rv.world))
        if rv.init_method == "env://"
        else rv.world
    )
    threads = threads_per_process(tcfg, device_type, on_node)
    caller_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    ddp.init_group(rv, device_type)
    try:
        resume = read_last(job.run_dir)
        if resume is not None:
            check_resumable(resume, config_digest(job.cfg), job.classes, job.run_dir)
        if resume is not None and resume.finished:
            if rv.rank == 0:
                log.info(
                    "%s already finished (%d epochs): nothing to train", job.run_dir, resume.epoch
                )
        else:
            Trainer(job, rv, device, precision, resume).run()
    finally:
        ddp.end_group(rv)
        torch.set_num_threads(caller_threads)  # in-process training leaves the caller as it was
