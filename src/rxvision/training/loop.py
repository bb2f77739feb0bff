"""The fit loop of one process: a Trainer holds the model, optimizer, schedule, EMA, loaders
and callbacks of a run, trains and validates epoch by epoch, and snapshots/restores itself
as one LoopState (checkpoint.py)."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rxvision.config import RxVisionConfig
from rxvision.evaluation.metrics import macro_f1
from rxvision.models import build_model
from rxvision.training import distributed as ddp_utils
from rxvision.training.callbacks import (
    HISTORY_KEYS,
    CheckpointManager,
    EarlyStopping,
    _better,
)
from rxvision.training.checkpoint import LoopState, capture_rng, restore_rng
from rxvision.training.cpu_bf16 import guard_cpu_bf16
from rxvision.training.distributed import Rendezvous
from rxvision.training.loaders import build_loaders
from rxvision.training.setup import (
    Precision,
    balanced_class_weights,
    build_mixup,
    build_optimizer,
    build_scheduler,
    config_digest,
    configure_batchnorm,
    faster_cpu_precision,
    freeze_bn_statistics,
    plan_epochs,
    resolve_class_weights,
    spans_run,
    updates_per_epoch,
)
from rxvision.training.updates import (
    accumulation_group,
    backward_micro_batch,
    non_finite_error,
    optimizer_step,
)

log = logging.getLogger(__name__)
EMA_PREFIX = "ema_"


@dataclass
class Job:
    """Everything a (possibly spawned) training process needs; picklable."""

    cfg: RxVisionConfig
    train_set: Dataset
    val_set: Dataset
    classes: list[str]
    run_dir: Path
    hooks: tuple[Any, ...]
    train_labels: list[int] | None


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def call_hooks(hooks: Sequence[Any], method: str, *args: Any) -> None:
    for hook in hooks:
        fn = getattr(hook, method, None)
        if callable(fn):
            fn(*args)


class Trainer:
    """One process's share of a run (rank ``rv.rank`` of ``rv.world``)."""

    def __init__(
        self,
        job: Job,
        rv: Rendezvous,
        device: torch.device,
        precision: Precision,
        resume: LoopState | None,
    ) -> None:
        self.job, self.cfg, self.tcfg = job, job.cfg, job.cfg.training
        self.rank, self.world = rv.rank, rv.world
        self.device, self.precision = device, precision
        self.num_classes = len(job.classes)
        tcfg = self.tcfg

        seed_all(tcfg.seed)  # same initial weights on every rank
        model = build_model(self.cfg.model, self.num_classes, load_weights=resume is None)
        model = model.to(device)
        if tcfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        configure_batchnorm(model, tcfg)
        self.model = model
        self.ema = self._build_ema() if tcfg.ema.enabled else None
        if device.type == "cpu" and precision.dtype == torch.bfloat16:
            guard_cpu_bf16(model)
            if self.ema is not None:
                guard_cpu_bf16(self.ema.module)
            if tcfg.precision == "auto":  # bf16 only where it is measured faster here
                shape = (self.cfg.data.loader.batch_size, 3, *([self.cfg.data.image_size] * 2))
                chosen = faster_cpu_precision(model, shape, tcfg.channels_last)
                self.precision = precision = ddp_utils.broadcast_object(chosen, rv.world)
        seed_all(tcfg.seed + 1000 * self.rank)  # ranks differ in dropout / mixup draws

        self.loaders = build_loaders(
            self.cfg,
            job.train_set,
            job.val_set,
            job.train_labels,
            self.rank,
            self.world,
            device.type,
        )
        self.optimizer = build_optimizer(model, tcfg)
        self.upe = updates_per_epoch(len(self.loaders.train), tcfg.accumulate_grad_batches)
        self.scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None
        self.class_weights = resolve_class_weights(tcfg, job.train_labels or [], self.num_classes)
        weights = (
            balanced_class_weights(job.train_labels or [], self.num_classes).to(device)
            if self.class_weights == "balanced"
            else None
        )
        self.criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=tcfg.label_smoothing)
        self.soft_criterion = nn.CrossEntropyLoss(weight=weights)  # mixup targets are smoothed
        self.mixup = build_mixup(tcfg, self.num_classes)
        es, ck = tcfg.early_stopping, tcfg.checkpoint
        self.early = (
            EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta) if es.enabled else None
        )
        self.ckpts = CheckpointManager(job.run_dir, ck.monitor, ck.mode, ck.save_top_k, ck.select)

        self.epoch = 0
        self.planned_epochs = tcfg.epochs
        self.history: list[dict[str, float]] = []
        self.time_budget: dict[str, float] | None = None
        self.train_time_s = 0.0
        self.stopped_early = False
        if resume is not None:
            self.restore(resume)
        else:
            self.scheduler = self._build_scheduler()
        self.ddp = ddp_utils.wrap(model, self.world, device)

    # ----------------------------------------------------------------- building blocks
    def _build_ema(self) -> Any:
        from timm.utils import ModelEmaV3

        e = self.tcfg.ema
        return ModelEmaV3(self.model, decay=e.decay, use_warmup=e.warmup)

    def _build_scheduler(self) -> Any:
        return build_scheduler(
            self.optimizer, self.tcfg.scheduler, self.upe, total_epochs=self.planned_epochs
        )

    def _unfreeze_due(self, epoch: int) -> bool:
        at = self.cfg.model.unfreeze_at_epoch
        return self.cfg.model.freeze_backbone and at is not None and epoch >= at

    # ----------------------------------------------------------- the one save/restore pair
    def snapshot(self) -> LoopState:
        """The state after ``self.epoch`` finished epochs, as a checkpoint."""
        sched = self.scheduler
        return LoopState(
            epoch=self.epoch,
            planned_epochs=self.planned_epochs,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            history=list(self.history),
            checkpoints=self.ckpts.state_dict(),
            rng=capture_rng(self.device.type),
            classes=list(self.job.classes),
            digest=config_digest(self.cfg),
            stopped_early=self.stopped_early,
            ema=self.ema.module.state_dict() if self.ema is not None else None,
            scheduler=sched.state_dict() if sched is not None else None,
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            early_stopping=self.early.state_dict() if self.early is not None else None,
            time_budget=dict(self.time_budget) if self.time_budget else None,
            train_time_s=self.train_time_s,
        )

    def restore(self, state: LoopState) -> None:
        """Continue from ``state``: every piece snapshot() wrote, in the order they depend on
        each other (the plan before the schedule built for it, the model before its EMA)."""
        self.epoch, self.planned_epochs = int(state.epoch), int(state.planned_epochs)
        self.time_budget = dict(state.time_budget) if state.time_budget else None
        self.train_time_s = float(state.train_time_s)
        self.history = [dict(r) for r in state.history]
        self.stopped_early = bool(state.stopped_early)
        if self._unfreeze_due(self.epoch):
            self.model.set_backbone_trainable(True)
        self.model.load_state_dict(state.model)
        if self.ema is not None:
            self.ema.module.load_state_dict(state.ema if state.ema is not None else state.model)
        self.scheduler = self._build_scheduler()  # moves the lr: before the optimizer's state
        self.optimizer.load_state_dict(state.optimizer)
        if self.scheduler is not None and state.scheduler is not None:
            self.scheduler.load_state_dict(state.scheduler)
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        if self.early is not None and state.early_stopping is not None:
            self.early.load_state_dict(state.early_stopping)
        self.ckpts.load_state_dict(state.checkpoints)
        if self.rank == 0:
            restore_rng(state.rng)
        else:
            seed_all(self.tcfg.seed + 1000 * self.rank + self.epoch)

    # ----------------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Train until the planned epoch count or early stopping; returns the end summary."""
        tcfg, rank = self.tcfg, self.rank
        if rank == 0:
            if self.epoch:
                log.info(
                    "resuming %s from epoch %d of %d",
                    self.job.run_dir,
                    self.epoch,
                    self.planned_epochs,
                )
            call_hooks(self.job.hooks, "on_train_start", self._start_info())
        started = time.perf_counter()
        while self.epoch < self.planned_epochs and not self.stopped_early:
            epoch = self.epoch
            if self.model.backbone_frozen and self._unfreeze_due(epoch):
                self.model.set_backbone_trainable(True)
                self.ddp = ddp_utils.wrap(self.model, self.world, self.device)  # new params
                if rank == 0:
                    log.info("epoch %d: backbone unfrozen", epoch + 1)
            self.loaders.seed_epoch(tcfg.seed, rank, epoch)
            row = self._epoch(epoch)
            self.history.append(row)
            self.epoch = epoch + 1
            if tcfg.time_budget_s is not None and self.time_budget is None:
                self._fit_to_budget()
            stop = False
            if self.early is not None:
                stop = self.early.update(
                    self._selected(row, self.early.monitor, self.early.mode)[0]
                )
            self.stopped_early = bool(stop and self.epoch < self.planned_epochs)
            if rank == 0:
                self._save(row)
                self._log_epoch(row)
                call_hooks(self.job.hooks, "on_epoch_end", self.epoch, dict(row))
            ddp_utils.barrier(self.world)
        if self.stopped_early and rank == 0:
            es = tcfg.early_stopping
            log.info(
                "early stopping after epoch %d: %s did not improve for %d epochs",
                self.epoch,
                es.monitor,
                es.patience,
            )
        summary = self._summary(time.perf_counter() - started)
        if rank == 0:
            call_hooks(self.job.hooks, "on_train_end", summary)
        return summary

    def _epoch(self, epoch: int) -> dict[str, float]:
        lr = float(self.optimizer.param_groups[0]["lr"])
        train_stats = self.train_epoch(epoch)
        if self.scheduler is not None and self.tcfg.scheduler.interval == "epoch":
            self.scheduler.step()
        val_start = time.perf_counter()
        val_stats = self.validate(self.model)
        row = {**train_stats, **val_stats, "epoch": epoch + 1, "lr": lr}
        row["epoch_time_s"] = train_stats["_train_time_s"] + time.perf_counter() - val_start
        row = {k: row[k] for k in HISTORY_KEYS}
        if self.ema is not None:
            ema_start = time.perf_counter()
            ema_stats = self.validate(self.ema.module)
            row.update({EMA_PREFIX + k: v for k, v in ema_stats.items()})
            row["epoch_time_s"] += time.perf_counter() - ema_start
        self.train_time_s += row["epoch_time_s"]
        return row

    @staticmethod
    def _selected(row: dict[str, float], monitor: str, mode: str) -> tuple[dict[str, float], str]:
        """The monitored value of the better weights this epoch: the EMA's where it scores
        better than the raw weights, else the model's."""
        value, weights = row[monitor], "model"
        ema_key = EMA_PREFIX + monitor
        if ema_key in row and _better(row[ema_key], value, mode):
            value, weights = row[ema_key], "ema"
        return {monitor: value}, weights

    def _fit_to_budget(self) -> None:
        """After the first timed epoch: the epoch count that fits training.time_budget_s, the
        same on every rank; a run-long schedule is rebuilt so it still ends at its minimum."""
        budget = float(self.tcfg.time_budget_s)  # type: ignore[arg-type]
        planned = plan_epochs(budget, self.train_time_s, self.epoch, self.tcfg.epochs)
        planned = int(ddp_utils.broadcast_object(planned, self.world))
        self.time_budget = {
            "budget_s": budget,
            "measured_epoch_s": self.train_time_s / self.epoch,
            "planned_epochs": float(planned),
        }
        if planned != self.planned_epochs:
            self.planned_epochs = planned
            if self.scheduler is not None and spans_run(self.tcfg.scheduler):
                self._rebuild_scheduler()
        if self.rank == 0:
            log.info(
                "time budget %.0fs: epoch 1 took %.1fs, so %d epoch(s) (at most %d)",
                budget,
                self.time_budget["measured_epoch_s"],
                planned,
                self.tcfg.epochs,
            )

    def _rebuild_scheduler(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        self.scheduler = self._build_scheduler()
        done = self.epoch * (self.upe if self.tcfg.scheduler.interval == "step" else 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step() before optimizer.step()": replaying
            for _ in range(done):
                self.scheduler.step()

    def _save(self, row: dict[str, float]) -> None:
        score, weights = self._selected(row, self.ckpts.monitor, self.ckpts.mode)
        new_file, evicted = self.ckpts.plan(self.epoch, score, weights)
        self.snapshot().save(self.ckpts, new_file, evicted)
        write_history(self.job.run_dir, self.history)

    def _log_epoch(self, row: dict[str, float]) -> None:
        log.info(
            "epoch %d/%d  train_loss %.4f  train_acc %.3f  val_loss %.4f  val_acc %.3f  "
            "val_macro_f1 %.3f%s  lr %.2e  %.1f img/s  %.1fs",
            self.epoch,
            self.planned_epochs,
            row["train_loss"],
            row["train_accuracy"],
            row["val_loss"],
            row["val_accuracy"],
            row["val_macro_f1"],
            f"  ema_val_acc {row['ema_val_accuracy']:.3f}" if self.ema is not None else "",
            row["lr"],
            row["images_per_s"],
            row["epoch_time_s"],
        )

    def _start_info(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.job.run_dir),
            "classes": list(self.job.classes),
            "num_classes": self.num_classes,
            "train_size": len(self.job.train_set),  # type: ignore[arg-type]
            "val_size": len(self.job.val_set),  # type: ignore[arg-type]
            "start_epoch": self.epoch,
            "epochs": self.planned_epochs,
            "world_size": self.world,
            "device": self.device.type,
            "precision": self.precision.name,
            "class_weights": self.class_weights,
            "weights_source": getattr(self.model, "weights_source", "none"),
            "config": self.cfg.model_dump(mode="json"),
        }

    def _summary(self, elapsed: float) -> dict[str, Any]:
        best = self.ckpts.best
        return {
            "epochs_run": self.history[-1]["epoch"] if self.history else 0,
            "planned_epochs": self.planned_epochs,
            "stopped_early": self.stopped_early,
            "monitor": self.ckpts.monitor,
            "checkpoint_select": self.ckpts.select,
            "best_epoch": best["epoch"] if best else None,
            "best_score": best["score"] if best else None,
            "best_weights": best.get("weights", "model") if best else None,
            "best_checkpoint": str(self.ckpts.best_path) if best else None,
            "precision": self.precision.name,
            "time_budget": self.time_budget,
            "train_time_s": elapsed,
        }

    # --------------------------------------------------------------- train / validate
    def train_epoch(self, epoch: int) -> dict[str, float]:
        tcfg, loader, rank, world = self.tcfg, self.loaders.train, self.rank, self.world
        self.ddp.train()
        if tcfg.freeze_bn_stats:
            freeze_bn_statistics(self.model)
        step_scheduler = self.scheduler is not None and tcfg.scheduler.interval == "step"
        n_batches = len(loader)
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch + 1}/{self.planned_epochs}",
            disable=rank != 0,
            leave=False,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        updates = epoch * self.upe
        start = time.perf_counter()
        for i, (x, y) in enumerate(loader):
            x = x.to(self.device, non_blocking=True)
            if tcfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(self.device, non_blocking=True)
            group_len, last_in_group = accumulation_group(
                i, n_batches, tcfg.accumulate_grad_batches
            )
            if self.mixup is not None and len(x) % 2 == 0:  # timm's batch mixup pairs samples
                x, target = self.mixup(x, y)
                loss_fn = self.soft_criterion
            else:
                target, loss_fn = y, self.criterion
            no_sync = (
                self.ddp.no_sync()
                if (world > 1 and not last_in_group)
                else contextlib.nullcontext()
            )
            with no_sync:
                logits, loss = backward_micro_batch(
                    self.ddp, x, target, loss_fn, self.precision, self.scaler, group_len
                )
            if not torch.isfinite(loss):
                raise non_finite_error(
                    "loss", float(loss.detach()), epoch, i, n_batches, tcfg, self.precision.name
                )
            if last_in_group:
                norm = optimizer_step(self.model, self.optimizer, self.scaler, tcfg.grad_clip_norm)
                if self.scaler is None and not math.isfinite(norm):
                    raise non_finite_error(
                        "gradient norm", norm, epoch, i, n_batches, tcfg, self.precision.name
                    )
                updates += 1
                if self.ema is not None:
                    self.ema.update(self.model, step=updates)
                if step_scheduler:
                    self.scheduler.step()
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
        train_time = ddp_utils.max_across(time.perf_counter() - start, world)
        ddp_utils.sum_across(totals, world)
        count = max(float(totals[2]), 1.0)
        return {
            "train_loss": float(totals[0]) / count,
            "train_accuracy": float(totals[1]) / count,
            "images_per_s": count / max(train_time, 1e-9),
            "_train_time_s": train_time,
        }

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Loss, accuracy and macro-F1 (the evaluation's) of ``model`` on the val split,
        each rank predicting its shard and the predictions gathered."""
        model.eval()  # the bare module: no DDP collectives, ranks may hold different counts
        loss_sum, preds, labels = 0.0, [], []
        loader: DataLoader = self.loaders.val
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.tcfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            preds.append(logits.argmax(1).cpu())
            labels.append(y.cpu())
        pred = torch.cat(preds).numpy() if preds else np.empty(0, dtype=np.int64)
        true = torch.cat(labels).numpy() if labels else np.empty(0, dtype=np.int64)
        if self.world > 1:
            gathered = ddp_utils.gather_objects((pred, true, loss_sum), self.world)
            pred = np.concatenate([g[0] for g in gathered])
            true = np.concatenate([g[1] for g in gathered])
            loss_sum = sum(g[2] for g in gathered)
        n = max(len(true), 1)
        return {
            "val_loss": loss_sum / n,
            "val_accuracy": float((pred == true).mean()) if len(true) else 0.0,
            "val_macro_f1": macro_f1(true, pred, self.num_classes),
        }


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    import json

    path = run_dir / "history.json"
    tmp = path.with_name(".history.json.tmp")
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(path)
