"""The loop's checkpoint: one dataclass of everything a resumed run needs, one save/restore
pair, and files that load with ``torch.load(weights_only=True)`` (tensors and plain types only:
RNG states are stored as tensors, paths as strings)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxvision.errors import RxVisionError
from rxvision.training.callbacks import LAST_CKPT

CKPT_FORMAT = 2  # 2: weights_only-safe (RNG as tensors), planned epochs, EMA


@dataclass
class LoopState:
    """The fit loop's state after ``epoch`` finished epochs (rank 0's view)."""

    epoch: int
    planned_epochs: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    history: list[dict[str, float]]
    checkpoints: dict[str, Any]
    rng: dict[str, Any]
    classes: list[str]
    digest: dict[str, Any]
    stopped_early: bool = False
    ema: dict[str, torch.Tensor] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    # the time budget's plan: {"budget_s", "measured_epoch_s", "planned_epochs"} once fitted
    time_budget: dict[str, float] | None = None
    train_time_s: float = 0.0
    format: int = CKPT_FORMAT
    saved_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.epoch >= self.planned_epochs

    def save(self, manager: Any, new_file: str | None, evicted: list[str]) -> None:
        """Write last.ckpt (and the top-k file) through the CheckpointManager, atomically."""
        manager.save(asdict(self), new_file, evicted)

    @classmethod
    def load(cls, path: Path) -> LoopState:
        """Read a checkpoint this project wrote; weights_only=True, no code runs on load."""
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - old format, truncated or foreign file
            raise RxVisionError(
                f"{path} is not a checkpoint this version can read ({type(exc).__name__})",
                "train into a new run folder (run.py --no-resume)",
            ) from None
        if not isinstance(raw, dict) or raw.get("format") != CKPT_FORMAT:
            raise RxVisionError(
                f"{path} has an unknown checkpoint format", "train into a new run folder"
            )
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


def read_last(run_dir: Path) -> LoopState | None:
    """last.ckpt of ``run_dir``, or None when there is none (a fresh run)."""
    path = Path(run_dir) / LAST_CKPT
    return LoopState.load(path) if path.is_file() else None


def check_resumable(
    state: LoopState, digest: dict[str, Any], classes: list[str], run_dir: Path
) -> None:
    if state.classes != list(classes) or state.digest != digest:
        raise RxVisionError(
            f"{run_dir} holds a run of a different model or class list; it cannot be resumed "
            "with this config",
            "train into a new run folder (or delete the old one)",
        )


# ------------------------------------------------------------------------------ RNG
def capture_rng(device_type: str) -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and ints."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {
            "version": version,
            "state": torch.tensor(mt, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device_type == "cuda" else None,
    }


def restore_rng(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    np.random.set_state(
        (
            npy["name"],
            npy["keys"].numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
