"""Callbacks of the fit loop: the hook interface trackers plug into, early stopping, and
checkpoints (top-k by a monitored metric + last.ckpt, written atomically)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

LAST_CKPT = "last.ckpt"
HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "lr",
    "epoch_time_s",
    "images_per_s",
)
MONITORABLE = tuple(k for k in HISTORY_KEYS if k.startswith(("train_", "val_")))


@runtime_checkable
class TrainingHookProtocol(Protocol):
    def on_train_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, summary: dict[str, Any]) -> None: ...


class TrainingHook:
    """Base class for hooks (e.g. the MLflow tracker). Hooks must be picklable: with
    ``devices > 1`` they travel to the DDP processes and run on rank 0 only."""

    def on_train_start(self, info: dict[str, Any]) -> None:
        """Once, before the first epoch of this call (``info['start_epoch']`` > 0 on resume)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch (``epoch`` counts from 1) with that epoch's history row."""

    def on_train_end(self, summary: dict[str, Any]) -> None:
        """Once, after the last epoch, with epochs_run, stopped_early, best metric/checkpoint."""


def check_monitor(name: str, what: str) -> None:
    if name not in MONITORABLE:
        raise RxVisionError(
            f"{what} monitors '{name}', which the training history does not have",
            f"choose one of: {', '.join(MONITORABLE)}",
        )


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str
    mode: str = "max"
    patience: int = 10
    min_delta: float = 0.0
    best: float | None = None
    wait: int = 0

    def update(self, metrics: dict[str, float]) -> bool:
        """Record one epoch; True when training should stop."""
        value = float(metrics[self.monitor])
        if _better(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """tmp file + fsync + os.replace: a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class CheckpointManager:
    """Keeps last.ckpt (everything needed to resume) and the ``top_k`` selected epochs: the
    best by ``monitor`` (``select="best"``) or the latest (``select="last"``). A kept file is a
    hard link to that epoch's full checkpoint (no second write)."""

    directory: Path
    monitor: str
    mode: str = "max"
    top_k: int = 1
    select: str = "best"
    # {"epoch", "score", "file", "weights"}
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_CKPT

    @property
    def best(self) -> dict[str, Any] | None:
        return self.kept[0] if self.kept else None

    @property
    def best_path(self) -> Path | None:
        return self.directory / self.kept[0]["file"] if self.kept else None

    def _sort(self) -> None:
        if self.select == "last":
            self.kept.sort(key=lambda k: k["epoch"], reverse=True)
            return
        finite = [k for k in self.kept if not math.isnan(k["score"])]
        nan = [k for k in self.kept if math.isnan(k["score"])]
        finite.sort(key=lambda k: k["score"], reverse=self.mode == "max")
        self.kept = finite + nan

    def plan(
        self, epoch: int, metrics: dict[str, float], weights: str = "model"
    ) -> tuple[str | None, list[str]]:
        """Decide (before writing) whether this epoch enters the top-k and who leaves;
        ``weights`` records which of the checkpoint's weights scored ("model" or "ema")."""
        score = float(metrics[self.monitor])
        name = f"epoch={epoch:03d}-{self.monitor}={score:.4f}.ckpt"
        candidate = {"epoch": epoch, "score": score, "file": name, "weights": weights}
        self.kept = [k for k in self.kept if k["epoch"] != epoch]
        self.kept.append(candidate)
        self._sort()
        evicted = [k["file"] for k in self.kept[self.top_k :]]
        self.kept = self.kept[: self.top_k]
        return (name if candidate in self.kept else None), evicted

    def save(self, state: dict[str, Any], new_file: str | None, evicted: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{LAST_CKPT}.tmp"
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if new_file is not None:
            target = self.directory / new_file
            target.unlink(missing_ok=True)
            try:
                os.link(tmp, target)
            except OSError:  # file systems without hard links
                atomic_torch_save(state, target)
        os.replace(tmp, self.last_path)
        for name in evicted:
            if name != new_file:
                (self.directory / name).unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"kept": list(self.kept)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = [dict(k) for k in state["kept"]]
