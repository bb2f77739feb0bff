"""bentos.batching.AdaptiveBatcher on BentoML's real dispatcher, in one event loop: concurrent
callers are merged into batches and each gets its own rows back; errors reach every caller
of the failed batch; shed requests raise Overloaded."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bentos.batching import AdaptiveBatcher, Overloaded

pytestmark = pytest.mark.serving


def test_concurrent_calls_are_merged_and_answered_in_order() -> None:
    sizes: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.02)  # a model call that takes a while, so callers queue up behind it
        return batch * 10

    async def main() -> tuple[list[np.ndarray], list[np.ndarray]]:
        batcher = AdaptiveBatcher(
            infer, max_batch_size=8, max_latency_ms=5000, on_batch=sizes.append
        )
        rows = [np.full((1 + i % 2, 3), i, dtype=np.float32) for i in range(24)]
        return rows, await asyncio.gather(*(batcher(r) for r in rows))

    rows, outs = asyncio.run(main())
    for row, out in zip(rows, outs):
        np.testing.assert_array_equal(out, row * 10)
    assert sum(sizes) == sum(len(r) for r in rows)
    assert max(sizes) > 1 and max(sizes) <= 8


def test_a_failing_batch_raises_in_its_callers_only() -> None:
    def infer(batch: np.ndarray) -> np.ndarray:
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch

    async def main() -> tuple[object, np.ndarray]:
        batcher = AdaptiveBatcher(infer, max_batch_size=1, max_latency_ms=5000)
        bad, good = await asyncio.gather(
            batcher(np.array([[-1.0]])), batcher(np.array([[2.0]])), return_exceptions=True
        )
        return bad, good

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError) and "negative" in str(bad)
    np.testing.assert_array_equal(good, [[2.0]])


def test_requests_that_cannot_meet_max_latency_are_shed() -> None:
    def infer(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return batch

    async def main() -> list[object]:
        batcher = AdaptiveBatcher(infer, max_batch_size=1, max_latency_ms=10)
        return await asyncio.gather(
            *(batcher(np.ones((1, 2))) for _ in range(40)), return_exceptions=True
        )

    results = asyncio.run(main())
    shed = [r for r in results if isinstance(r, Overloaded)]
    assert shed, "40 requests of 50 ms each cannot all finish within 10 ms"
    assert all(isinstance(r, (Overloaded, np.ndarray)) for r in results)


def test_model_outputs_are_split_per_caller_without_concatenating_fields() -> None:
    from rxvision.serving import ModelOutput

    def infer(batch: np.ndarray) -> ModelOutput:
        time.sleep(0.02)
        return ModelOutput(batch[:, :2] * 2, batch[:, 2:] + 1)

    async def main() -> tuple[list[np.ndarray], list[ModelOutput]]:
        batcher = AdaptiveBatcher(infer, max_batch_size=8, max_latency_ms=5000)
        rows = [np.full((1 + i % 3, 5), i, dtype=np.float32) for i in range(12)]
        return rows, await asyncio.gather(*(batcher(r) for r in rows))

    rows, outs = asyncio.run(main())
    for row, out in zip(rows, outs):
        np.testing.assert_array_equal(out.probs, row[:, :2] * 2)
        np.testing.assert_array_equal(out.embeddings, row[:, 2:] + 1)
