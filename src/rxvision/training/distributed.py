"""Processes of a DDP run: either launched by someone else (torchrun, a Kubernetes PyTorchJob:
RANK / WORLD_SIZE / MASTER_ADDR / LOCAL_RANK in the environment, env:// rendezvous) or spawned
here on one node. Spawned workers die with their parent."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK")
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Rendezvous:
    """Who this process is in the run and how it finds the others."""

    rank: int
    world: int
    local_rank: int
    init_method: str | None  # None: a single process, no process group

    @property
    def distributed(self) -> bool:
        return self.world > 1


def from_environment() -> Rendezvous | None:
    """The torchrun / PyTorchJob rendezvous when all of its variables are set, else None."""
    env = os.environ
    if not all(env.get(k) for k in TORCHRUN_VARS):
        return None
    return Rendezvous(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), "env://")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG), so
    a killed training step leaves no orphaned DDP workers holding cores and ports. Returns
    False where prctl is unavailable (non-Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return True


def spawn(entry: Callable[..., None], world: int, args: tuple[Any, ...], run_dir: Path) -> None:
    """Run ``entry(rank, rendezvous, *args)`` in ``world`` fresh processes on this node; an
    RxVisionError raised in a worker is raised here with its own message."""
    init = f"tcp://127.0.0.1:{free_port()}"
    for stale in run_dir.glob(".rank*.error"):
        stale.unlink()
    try:
        mp.spawn(
            _worker, args=(world, init, entry, args, run_dir, os.getpid()), nprocs=world, join=True
        )
    except mp.ProcessRaisedException:
        for path in sorted(run_dir.glob(".rank*.error")):
            problem, hint = json.loads(path.read_text())
            raise RxVisionError(problem, hint) from None
        raise


def _worker(
    rank: int,
    world: int,
    init: str,
    entry: Callable[..., None],
    args: tuple[Any, ...],
    run_dir: Path,
    parent: int,
) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    try:
        entry(Rendezvous(rank, world, rank, init), *args)
    except RxVisionError as err:
        (run_dir / f".rank{rank}.error").write_text(json.dumps([err.problem, err.hint]))
        raise


def init_group(rv: Rendezvous, device_type: str) -> None:
    if rv.distributed:
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method=rv.init_method, rank=rv.rank, world_size=rv.world
        )


def end_group(rv: Rendezvous) -> None:
    if rv.distributed and dist.is_initialized():
        dist.barrier()  # rank 0's last checkpoint is on disk before anyone returns
        dist.destroy_process_group()


def wrap(model: nn.Module, world: int, device: torch.device) -> nn.Module:
    """DDP around the model (registers only parameters that need gradients)."""
    if world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def sum_across(tensor: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_across(value: float, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def gather_objects(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, world: int) -> Any:
    """Rank 0's value on every rank (e.g. the time budget's epoch count)."""
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
