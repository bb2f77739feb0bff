"""The fit loop: AdamW + warm-restart cosine, label smoothing, class weights, mixup/cutmix,
clipping, accumulation, AMP, DDP (N processes), early stopping, top-k + last checkpoints and
exact resume from last.ckpt."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import pickle
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import f1_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from rxvision.models import RxVisionClassifier, build_model
from rxvision.training.callbacks import (
    HISTORY_KEYS,
    LAST_CKPT,
    CheckpointManager,
    EarlyStopping,
    TrainingHookProtocol,
    check_monitor,
)
from rxvision.training.cpu_bf16 import guard_cpu_bf16
from rxvision.training.setup import (
    Precision,
    balanced_class_weights,
    build_mixup,
    build_optimizer,
    build_scheduler,
    check_devices,
    config_digest,
    resolve_device_type,
    resolve_precision,
    threads_per_process,
    updates_per_epoch,
)

log = logging.getLogger(__name__)

CKPT_FORMAT = 1


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

    def summary(self) -> dict[str, Any]:
        return {
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            **{f"best_{k}": v for k, v in self.best_metrics.items()},
        }


@dataclass
class _Job:
    """Everything a (possibly spawned) training process needs; picklable."""

    cfg: RxVisionConfig
    train_set: Dataset
    val_set: Dataset
    classes: list[str]
    run_dir: Path
    hooks: tuple[Any, ...]
    train_labels: list[int] | None


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
    if tcfg.class_weights == "balanced":
        labels = labels if labels is not None else _dataset_labels(train_set)
        balanced_class_weights(labels, len(classes))  # raises early on empty classes
    run_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(cfg, train_set, val_set, list(classes), run_dir, tuple(hooks), labels)

    if tcfg.devices > 1:
        try:
            pickle.dumps(job.hooks)
        except Exception as exc:  # noqa: BLE001
            raise RxVisionError(
                f"training hooks must be picklable for devices > 1: {exc}"
            ) from None
        _spawn(job)
    else:
        _train_process(0, 1, job, None)
    return load_result(run_dir, cfg, len(classes), normalization)


def load_result(
    run_dir: Path, cfg: RxVisionConfig, num_classes: int, normalization: Any = None
) -> TrainResult:
    """The TrainResult of a run folder: history from last.ckpt, the model from the best one."""
    last = Path(run_dir) / LAST_CKPT
    if not last.is_file():
        raise RxVisionError(f"{run_dir} holds no {LAST_CKPT}", "train into this folder first")
    state = torch.load(last, map_location="cpu", weights_only=False)
    kept = state["checkpoints"]["kept"]
    best = Path(run_dir) / kept[0]["file"] if kept else last
    best_state = state if best == last else torch.load(best, map_location="cpu", weights_only=False)
    model = build_model(cfg.model, num_classes, load_weights=False)
    if cfg.model.freeze_backbone:
        model.set_backbone_trainable(True)
    model.load_state_dict(best_state["model"])
    model.eval()
    best_row = next((r for r in state["history"] if r["epoch"] == best_state["epoch"]), {})
    return TrainResult(
        model=model,
        history=list(state["history"]),
        best_checkpoint=best,
        epochs_run=int(state["epoch"]),
        stopped_early=bool(state["stopped_early"]),
        normalization=normalization,
        best_metrics={k: v for k, v in best_row.items() if k != "epoch"},
        run_dir=Path(run_dir),
    )


# ------------------------------------------------------------------------ processes
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(job: _Job) -> None:
    world = job.cfg.training.devices
    init = f"tcp://127.0.0.1:{_free_port()}"
    for stale in job.run_dir.glob(".rank*.error"):
        stale.unlink()
    try:
        mp.spawn(_ddp_entry, args=(world, job, init), nprocs=world, join=True)
    except mp.ProcessRaisedException:
        for path in sorted(job.run_dir.glob(".rank*.error")):
            problem, hint = json.loads(path.read_text())
            raise RxVisionError(problem, hint) from None
        raise


def _ddp_entry(rank: int, world: int, job: _Job, init: str) -> None:
    try:
        _train_process(rank, world, job, init)
    except RxVisionError as err:
        (job.run_dir / f".rank{rank}.error").write_text(json.dumps([err.problem, err.hint]))
        raise


def _dataset_labels(dataset: Dataset) -> list[int]:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return [int(v) for v in getattr(dataset, attr)]
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return [int(v) for v in tensors[1]]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


class _ShardSampler(Sampler[int]):
    """rank::world without padding: DistributedSampler pads with repeats, which would bias
    validation metrics (each rank's predictions are gathered, so each sample counts once)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_epoch(
    loader: DataLoader, sampler: DistributedSampler, seed: int, rank: int, epoch: int
) -> None:
    """Data order and augmentation draws that depend only on (seed, rank, epoch), so a resumed
    run sees what the interrupted one would have (exactly so with num_workers=0 or
    non-persistent workers; persistent workers keep the streams they started with)."""
    sampler.set_epoch(epoch)
    stream = seed + 1000 * rank + epoch
    if loader.generator is not None:
        loader.generator.manual_seed(stream)  # draws each epoch's worker seeds
    reseed = getattr(loader.dataset, "reseed", None)
    if loader.num_workers == 0 and callable(reseed):
        reseed(stream)  # in-process augmentation RNG (albumentations Compose)


def _loaders(
    job: _Job, rank: int, world: int, device_type: str
) -> tuple[DataLoader, DistributedSampler, DataLoader]:
    from rxvision.data.loader import seed_worker

    lcfg, seed = job.cfg.data.loader, job.cfg.training.seed
    per_rank = math.ceil(len(job.train_set) / world)  # type: ignore[arg-type]
    drop_last = bool(lcfg.drop_last and per_rank > lcfg.batch_size)
    # A DistributedSampler even for one process: its order depends only on (seed, epoch), so
    # a resumed run sees exactly the batches the interrupted one would have.
    sampler = DistributedSampler(
        job.train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
    common = {
        "num_workers": lcfg.num_workers,
        "pin_memory": bool(lcfg.pin_memory and device_type == "cuda"),
        "worker_init_fn": seed_worker if lcfg.num_workers > 0 else None,
        "prefetch_factor": lcfg.prefetch_factor if lcfg.num_workers > 0 else None,
    }
    generator = torch.Generator().manual_seed(seed + rank)
    train = DataLoader(
        job.train_set,
        batch_size=lcfg.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=bool(lcfg.persistent_workers and lcfg.num_workers > 0),
        **common,
    )
    val = DataLoader(
        job.val_set,
        batch_size=lcfg.eval_batch_size,
        sampler=_ShardSampler(len(job.val_set), rank, world),  # type: ignore[arg-type]
        **common,
    )
    return train, sampler, val


# --------------------------------------------------------------------------- core
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device_type: str) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device_type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _call_hooks(hooks: Sequence[Any], method: str, *args: Any) -> None:
    for hook in hooks:
        fn = getattr(hook, method, None)
        if callable(fn):
            fn(*args)


def _train_process(rank: int, world: int, job: _Job, init: str | None) -> None:
    _cfg, tcfg = job.cfg, job.cfg.training
    device_type = resolve_device_type(tcfg)
    precision = resolve_precision(tcfg, device_type)
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    threads = threads_per_process(tcfg, device_type)
    caller_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    if world > 1:
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    try:
        _run(rank, world, job, device, precision)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(caller_threads)  # in-process training leaves the caller as it was


def _run(rank: int, world: int, job: _Job, device: torch.device, precision: Precision) -> None:
    cfg, tcfg = job.cfg, job.cfg.training
    num_classes = len(job.classes)
    last_path = job.run_dir / LAST_CKPT
    resume = (
        torch.load(last_path, map_location="cpu", weights_only=False)
        if last_path.is_file()
        else None
    )
    if resume is not None:
        _check_resumable(resume, cfg, job.classes, job.run_dir)
        if resume["stopped_early"] or resume["epoch"] >= tcfg.epochs:
            if rank == 0:
                log.info(
                    "%s already finished (%d epochs): nothing to train",
                    job.run_dir,
                    resume["epoch"],
                )
            return

    _seed_all(tcfg.seed)  # same initial weights on every rank
    model = build_model(cfg.model, num_classes, load_weights=resume is None).to(device)
    if device.type == "cpu" and precision.dtype == torch.bfloat16:
        guard_cpu_bf16(model)
    _seed_all(tcfg.seed + 1000 * rank)  # ranks differ in dropout / mixup draws
    train_loader, sampler, val_loader = _loaders(job, rank, world, device.type)
    optimizer = build_optimizer(model, tcfg)
    upe = updates_per_epoch(len(train_loader), tcfg.accumulate_grad_batches)
    scheduler = build_scheduler(optimizer, tcfg.scheduler, upe)
    scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None
    weights = (
        balanced_class_weights(job.train_labels or [], num_classes).to(device)
        if tcfg.class_weights == "balanced"
        else None
    )
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=tcfg.label_smoothing)
    soft_criterion = nn.CrossEntropyLoss(weight=weights)  # mixup targets already smoothed
    mixup = build_mixup(tcfg, num_classes)
    es_cfg, ck_cfg = tcfg.early_stopping, tcfg.checkpoint
    early = (
        EarlyStopping(es_cfg.monitor, es_cfg.mode, es_cfg.patience, es_cfg.min_delta)
        if es_cfg.enabled
        else None
    )
    ckpts = CheckpointManager(job.run_dir, ck_cfg.monitor, ck_cfg.mode, ck_cfg.save_top_k)
    history: list[dict[str, float]] = []
    start_epoch = 0

    if resume is not None:
        start_epoch = int(resume["epoch"])
        if (
            cfg.model.freeze_backbone
            and cfg.model.unfreeze_at_epoch is not None
            and start_epoch >= cfg.model.unfreeze_at_epoch
        ):
            model.set_backbone_trainable(True)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler") is not None:
            scaler.load_state_dict(resume["scaler"])
        if early is not None and resume.get("early_stopping") is not None:
            early.load_state_dict(resume["early_stopping"])
        ckpts.load_state_dict(resume["checkpoints"])
        history = list(resume["history"])
        if rank == 0:
            _set_rng_state(resume["rng"])
        else:
            _seed_all(tcfg.seed + 1000 * rank + start_epoch)
        if rank == 0:
            log.info("resuming %s from epoch %d of %d", job.run_dir, start_epoch, tcfg.epochs)
        del resume

    ddp = _wrap(model, world, device)
    if rank == 0:
        info = {
            "run_dir": str(job.run_dir),
            "classes": list(job.classes),
            "num_classes": num_classes,
            "train_size": len(job.train_set),  # type: ignore[arg-type]
            "val_size": len(job.val_set),  # type: ignore[arg-type]
            "start_epoch": start_epoch,
            "epochs": tcfg.epochs,
            "world_size": world,
            "device": device.type,
            "precision": tcfg.precision,
            "weights_source": getattr(model, "weights_source", "none"),
            "config": cfg.model_dump(mode="json"),
        }
        _call_hooks(job.hooks, "on_train_start", info)

    stopped_early = False
    started = time.perf_counter()
    for epoch in range(start_epoch, tcfg.epochs):
        if (
            model.backbone_frozen
            and cfg.model.unfreeze_at_epoch is not None
            and epoch >= cfg.model.unfreeze_at_epoch
        ):
            model.set_backbone_trainable(True)
            ddp = _wrap(model, world, device)  # DDP registers only parameters that need grads
            if rank == 0:
                log.info("epoch %d: backbone unfrozen", epoch + 1)
        _seed_epoch(train_loader, sampler, job.cfg.training.seed, rank, epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        train_stats = _train_epoch(
            ddp,
            model,
            train_loader,
            optimizer,
            scheduler,
            scaler,
            criterion,
            soft_criterion,
            mixup,
            precision,
            device,
            tcfg,
            epoch,
            rank,
            world,
        )
        if scheduler is not None and tcfg.scheduler.interval == "epoch":
            scheduler.step()
        val_start = time.perf_counter()
        val_stats = _validate(model, val_loader, precision, device, num_classes, world)
        row = {
            "epoch": epoch + 1,
            **train_stats,
            **val_stats,
            "lr": lr,
            "epoch_time_s": train_stats.pop("_train_time_s") + time.perf_counter() - val_start,
        }
        row = {k: row[k] for k in HISTORY_KEYS}
        history.append(row)
        stop = early.update(row) if early is not None else False
        done = stop or epoch + 1 >= tcfg.epochs
        if rank == 0:
            new_file, evicted = ckpts.plan(epoch + 1, row)
            state = {
                "format": CKPT_FORMAT,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "early_stopping": early.state_dict() if early is not None else None,
                "checkpoints": ckpts.state_dict(),
                "history": history,
                "rng": _rng_state(device.type),
                "stopped_early": bool(stop and epoch + 1 < tcfg.epochs),
                "classes": list(job.classes),
                "digest": config_digest(cfg),
                "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            ckpts.save(state, new_file, evicted)
            _write_history(job.run_dir, history)
            log.info(
                "epoch %d/%d  train_loss %.4f  train_acc %.3f  val_loss %.4f  val_acc %.3f  val_macro_f1 %.3f"
                "  lr %.2e  %.1f img/s  %.1fs",
                epoch + 1,
                tcfg.epochs,
                row["train_loss"],
                row["train_accuracy"],
                row["val_loss"],
                row["val_accuracy"],
                row["val_macro_f1"],
                lr,
                row["images_per_s"],
                row["epoch_time_s"],
            )
            _call_hooks(job.hooks, "on_epoch_end", epoch + 1, dict(row))
        if world > 1:
            dist.barrier()
        if done:
            stopped_early = bool(stop and epoch + 1 < tcfg.epochs)
            if stopped_early and rank == 0:
                log.info(
                    "early stopping after epoch %d: %s did not improve for %d epochs",
                    epoch + 1,
                    es_cfg.monitor,
                    es_cfg.patience,
                )
            break

    if rank == 0:
        best = ckpts.best
        summary = {
            "epochs_run": history[-1]["epoch"] if history else 0,
            "stopped_early": stopped_early,
            "monitor": ck_cfg.monitor,
            "best_epoch": best["epoch"] if best else None,
            "best_score": best["score"] if best else None,
            "best_checkpoint": str(ckpts.best_path) if best else None,
            "train_time_s": time.perf_counter() - started,
        }
        _call_hooks(job.hooks, "on_train_end", summary)


def _wrap(model: nn.Module, world: int, device: torch.device) -> nn.Module:
    if world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _check_resumable(
    state: dict[str, Any], cfg: RxVisionConfig, classes: list[str], run_dir: Path
) -> None:
    if state.get("format") != CKPT_FORMAT:
        raise RxVisionError(
            f"{run_dir / LAST_CKPT} has an unknown checkpoint format", "train into a new run folder"
        )
    if state["classes"] != list(classes) or state["digest"] != config_digest(cfg):
        raise RxVisionError(
            f"{run_dir} holds a run of a different model or class list; it cannot be resumed with this config",
            "train into a new run folder (or delete the old one)",
        )


def _write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    path = run_dir / "history.json"
    tmp = path.with_name(".history.json.tmp")
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(path)


def accumulation_group(batch_index: int, n_batches: int, accumulate: int) -> tuple[int, bool]:
    """(size of the accumulation group this batch belongs to, whether it closes the group).
    The epoch's last group may be short; its loss is averaged over its own size."""
    group_start = (batch_index // accumulate) * accumulate
    group_len = min(accumulate, n_batches - group_start)
    return group_len, batch_index - group_start == group_len - 1


def backward_micro_batch(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_fn: nn.Module,
    precision: Precision,
    scaler: torch.amp.GradScaler | None,
    group_len: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward + backward of one micro-batch; gradients add up to the mean-loss gradient of
    the whole accumulation group (= one batch ``group_len`` times larger). Returns (logits,
    unscaled loss)."""
    with precision.autocast():
        logits = model(x)
    loss = loss_fn(logits.float(), target)
    scaled = loss / group_len
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return logits, loss


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    clip_norm: float | None,
) -> float:
    """Clip the global gradient norm (of the true, unscaled gradients) and step; returns the
    norm before clipping. Without a GradScaler a non-finite norm is returned without stepping
    (the caller stops the run); with one, the scaler skips that step as usual (fp16)."""
    if scaler is not None and clip_norm is not None:
        scaler.unscale_(optimizer)  # clip true gradients, not loss-scaled ones
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if clip_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm))
    else:
        norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    if scaler is None and not math.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return norm
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def non_finite_error(
    what: str, value: float, epoch: int, batch: int, n_batches: int, tcfg: Any
) -> RxVisionError:
    """The run stops rather than train on NaN/inf: say where, under which precision, and what
    usually helps."""
    hints = ["lower training.optimizer.lr", "raise training.scheduler.warmup_epochs"]
    if tcfg.grad_clip_norm is None:
        hints.append("set training.grad_clip_norm (e.g. 1.0)")
    if tcfg.precision != "32":
        hints.append("try training.precision=32")
    return RxVisionError(
        f"training diverged: the {what} is {value} at epoch {epoch + 1}, step {batch + 1} of "
        f"{n_batches} (precision {tcfg.precision}); nothing from this step was applied",
        ", or ".join(hints),
    )


def _train_epoch(
    ddp: nn.Module,
    model: RxVisionClassifier,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    criterion: nn.Module,
    soft_criterion: nn.Module,
    mixup: Any,
    precision: Precision,
    device: torch.device,
    tcfg: Any,
    epoch: int,
    rank: int,
    world: int,
) -> dict[str, float]:
    ddp.train()
    accumulate, clip = tcfg.accumulate_grad_batches, tcfg.grad_clip_norm
    step_scheduler = scheduler is not None and tcfg.scheduler.interval == "step"
    n_batches = len(loader)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(
        total=n_batches,
        desc=f"epoch {epoch + 1}/{tcfg.epochs}",
        disable=rank != 0,
        leave=False,
        mininterval=1.0,
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        group_len, last_in_group = accumulation_group(i, n_batches, accumulate)
        if mixup is not None and len(x) % 2 == 0:  # timm's batch mixup pairs samples
            x, target = mixup(x, y)
            loss_fn = soft_criterion
        else:
            target, loss_fn = y, criterion
        no_sync = ddp.no_sync() if (world > 1 and not last_in_group) else contextlib.nullcontext()
        with no_sync:
            logits, loss = backward_micro_batch(
                ddp, x, target, loss_fn, precision, scaler, group_len
            )
        if not torch.isfinite(loss):
            raise non_finite_error("loss", float(loss), epoch, i, n_batches, tcfg)
        if last_in_group:
            norm = optimizer_step(model, optimizer, scaler, clip)
            if scaler is None and not math.isfinite(norm):
                raise non_finite_error("gradient norm", norm, epoch, i, n_batches, tcfg)
            if step_scheduler:
                scheduler.step()
        with torch.no_grad():
            n = y.shape[0]
            totals += torch.stack(
                [
                    loss.detach().double().cpu() * n,
                    (logits.argmax(1) == y).sum().double().cpu(),
                    torch.tensor(float(n), dtype=torch.float64),
                ]
            )
        bar.update(1)
        if rank == 0 and (i % 10 == 0 or i == n_batches - 1):
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{totals[0] / totals[2]:.4f}",
                acc=f"{totals[1] / totals[2]:.3f}",
                img_s=f"{totals[2] * world / elapsed:.1f}",
                refresh=False,
            )
    bar.close()
    train_time = time.perf_counter() - start
    if world > 1:
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        t = torch.tensor([train_time], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        train_time = float(t)
    count = max(float(totals[2]), 1.0)
    return {
        "train_loss": float(totals[0]) / count,
        "train_accuracy": float(totals[1]) / count,
        "images_per_s": count / max(train_time, 1e-9),
        "_train_time_s": train_time,
    }


@torch.no_grad()
def _validate(
    model: nn.Module,
    loader: DataLoader,
    precision: Precision,
    device: torch.device,
    num_classes: int,
    world: int,
) -> dict[str, float]:
    model.eval()  # the bare module: no DDP collectives, ranks may hold different batch counts
    loss_sum, preds, labels = 0.0, [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with precision.autocast():
            logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
    pred = torch.cat(preds).numpy() if preds else np.empty(0, dtype=np.int64)
    true = torch.cat(labels).numpy() if labels else np.empty(0, dtype=np.int64)
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (pred, true, loss_sum))
        pred = np.concatenate([g[0] for g in gathered])
        true = np.concatenate([g[1] for g in gathered])
        loss_sum = sum(g[2] for g in gathered)
    n = max(len(true), 1)
    return {
        "val_loss": loss_sum / n,
        "val_accuracy": float((pred == true).mean()) if len(true) else 0.0,
        "val_macro_f1": float(
            f1_score(true, pred, average="macro", labels=list(range(num_classes)), zero_division=0)
        ),
    }
