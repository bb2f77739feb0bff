"""Worker layout: one worker per core with the threads split on CPU, one on CUDA; set values win."""

from __future__ import annotations

import pytest

from rxvision.config import ServingConfig
from rxvision.serving import layout as layout_module
from rxvision.serving.layout import worker_layout


@pytest.mark.parametrize(("cores", "expected"), [(1, (1, 1, 1)), (2, (2, 1, 2)), (8, (8, 1, 8))])
def test_cpu_defaults_one_worker_per_core(cores, expected) -> None:
    got = worker_layout(ServingConfig(runtime="onnx"), cores=cores)
    assert (got.workers, got.threads, got.concurrent_batches) == expected


def test_set_values_win_and_threads_split_the_cores() -> None:
    got = worker_layout(ServingConfig(runtime="onnx", workers=2), cores=8)
    assert (got.workers, got.threads, got.concurrent_batches) == (2, 4, 2)
    got = worker_layout(
        ServingConfig(runtime="onnx", workers=3, threads=2, concurrent_batches=1), cores=8
    )
    assert (got.workers, got.threads, got.concurrent_batches) == (3, 2, 1)


def test_cuda_gets_one_worker_and_one_batch_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(layout_module, "resolve_runtime", lambda runtime: "torch")
    got = worker_layout(ServingConfig(runtime="auto"), cores=16)
    assert (got.runtime, got.workers, got.threads, got.concurrent_batches) == ("torch", 1, None, 1)
