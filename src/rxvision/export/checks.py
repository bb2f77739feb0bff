"""Parity of an exported model against PyTorch, and a latency profiler per format."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rxvision.export.runtimes import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityReport:
    """How far a candidate format's logits are from the reference on the same images."""

    format: str
    n_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    atol: float | None
    passed: bool
    min_top1_agreement: float = 1.0
    accuracy_reference: float | None = None
    accuracy_candidate: float | None = None

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy_reference is None or self.accuracy_candidate is None:
            return None
        return self.accuracy_candidate - self.accuracy_reference

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_change": self.accuracy_change}


def _batched(runner: Runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


def check_parity(
    reference: Runner,
    candidate: Runner,
    images: np.ndarray,
    atol: float | None,
    labels: np.ndarray | None = None,
    batch_size: int = 16,
    min_top1_agreement: float = 1.0,
) -> ParityReport:
    """Run both on the same preprocessed images (N,3,S,S); passed when the largest logit
    difference is within ``atol`` and the share of agreeing top-1 labels is at least
    ``min_top1_agreement``. Approximate formats (int8, fp16) pass ``atol=None``: their logits
    move by design, so only the agreement decides. With labels, both accuracies are reported
    (the int8 accuracy change uses this)."""
    if len(images) == 0:
        raise ValueError("check_parity needs at least one image")
    ref = _batched(reference, images, batch_size)
    cand = _batched(candidate, images, batch_size)
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    agree = float(np.mean(ref.argmax(1) == cand.argmax(1)))
    acc_ref = acc_cand = None
    if labels is not None:
        labels = np.asarray(labels)
        acc_ref = float(np.mean(ref.argmax(1) == labels))
        acc_cand = float(np.mean(cand.argmax(1) == labels))
    max_diff = float(diff.max())
    passed = (atol is None or max_diff <= atol) and agree >= min_top1_agreement
    report = ParityReport(
        format=candidate.name,
        n_images=len(images),
        max_abs_diff=max_diff,
        mean_abs_diff=float(diff.mean()),
        top1_agreement=agree,
        atol=None if atol is None else float(atol),
        min_top1_agreement=float(min_top1_agreement),
        passed=bool(passed),
        accuracy_reference=acc_ref,
        accuracy_candidate=acc_cand,
    )
    log.info(
        "parity %s vs %s: max|diff| %.2e, top-1 agreement %.3f (%s)",
        candidate.name,
        reference.name,
        max_diff,
        agree,
        "pass" if passed else "FAIL",
    )
    return report


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles (ms per batch) and throughput (images/s) at one batch size."""

    format: str
    batch_size: int
    iterations: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_ips: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_latency(
    runner: Runner,
    image_size: int,
    batch_sizes: Sequence[int] = (1, 8, 16, 32),
    iterations: int = 20,
    warmup: int = 2,
    seed: int = 0,
) -> list[LatencyStats]:
    """Time ``runner`` on random inputs at each batch size (after ``warmup`` untimed calls)."""
    rng = np.random.default_rng(seed)
    out = []
    for bs in batch_sizes:
        x = rng.standard_normal((bs, 3, image_size, image_size), dtype=np.float32)
        for _ in range(warmup):
            runner(x)
        times = np.empty(iterations)
        for i in range(iterations):
            start = time.perf_counter()
            runner(x)
            times[i] = time.perf_counter() - start
        ms = times * 1000.0
        stats = LatencyStats(
            format=runner.name,
            batch_size=int(bs),
            iterations=int(iterations),
            p50_ms=float(np.percentile(ms, 50)),
            p95_ms=float(np.percentile(ms, 95)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
            throughput_ips=float(bs * iterations / times.sum()),
        )
        log.info(
            "%s batch %d: p50 %.1f ms, %.0f img/s",
            runner.name,
            bs,
            stats.p50_ms,
            stats.throughput_ips,
        )
        out.append(stats)
    return out
