"""How a serving process splits the machine: worker processes, inference threads per worker
and model calls in flight per worker."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rxvision.config import ServingConfig
from rxvision.serving.predictor import resolve_runtime


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerLayout:
    runtime: str
    workers: int
    threads: int | None  # None: the runtime's default
    concurrent_batches: int


def worker_layout(serving: ServingConfig, cores: int | None = None) -> WorkerLayout:
    """Values set in ``serving`` win. Unset on CPU (ONNX Runtime): one worker per core (each
    request's HTTP parsing and decoding needs CPU too, and processes do not share a GIL), the
    cores split over the workers' inference threads, and as many model calls in flight per
    worker as its threads fit in all cores, so a worker that holds most connections
    (keep-alive connections stay with the worker that accepted them) still uses every core.
    Unset with PyTorch on CUDA: one worker and one batch at a time on the GPU."""
    runtime = resolve_runtime(serving.runtime)
    cores = cores or available_cores()
    on_cpu = runtime == "onnx"
    workers = serving.workers or (cores if on_cpu else 1)
    threads = serving.threads or (max(1, cores // workers) if on_cpu else None)
    batches = serving.concurrent_batches or (max(1, cores // (threads or cores)) if on_cpu else 1)
    return WorkerLayout(runtime, workers, threads, batches)
