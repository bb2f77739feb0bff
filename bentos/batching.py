"""Adaptive batching inside the service process, with BentoML's own batching algorithm.

BentoML 1.4 applies adaptive batching only where an HTTP request enters a ``batchable`` API.
Reaching one from our request-handling API means a second service and an HTTP hop per request,
which measured ~10 ms of CPU per request on a 2-core machine (about as much as the model;
docs/benchmarks.md). So the request API calls the model through BentoML's dispatcher (the
CORK algorithm behind ``batchable=True``: it learns the model's latency per batch size and
waits only as long as ``max_latency_ms`` allows) in-process instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher, NonBlockSema

from rxvision.serving import ModelBusy, ModelOutput


class Overloaded(ModelBusy):
    """The batcher shed the request: it could not be answered within ``max_latency_ms``."""


def _shed() -> Any:
    raise Overloaded("the model's batch queue cannot meet max_latency_ms")


class AdaptiveBatcher:
    """``await batcher(rows)``: rows (N x ...) from one request are merged with other
    requests' rows into one call of ``infer`` (at most ``max_batch_size`` rows), which runs in a
    worker thread; each caller gets its own rows of the result back, in order (an array, or a
    ``ModelOutput`` when ``infer`` returns one). Up to ``concurrent_batches`` calls of
    ``infer`` run at once (BentoML's default is one)."""

    def __init__(
        self,
        infer: Callable[[np.ndarray], Any],
        max_batch_size: int,
        max_latency_ms: int,
        on_batch: Callable[[int], None] | None = None,
        concurrent_batches: int = 1,
    ) -> None:
        self.infer = infer
        self.on_batch = on_batch
        dispatcher = CorkDispatcher(
            max_latency_in_ms=max_latency_ms,
            max_batch_size=max_batch_size,
            fallback=_shed,
            get_batch_size=len,
            batch_dim=(0, 0),
            shared_sema=NonBlockSema(max(1, int(concurrent_batches))),
        )
        self._call = dispatcher(self._run_batch)

    async def _run_batch(self, parts: Sequence[np.ndarray]) -> list[Any]:
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        out = await asyncio.to_thread(self.infer, batch)
        if isinstance(out, ModelOutput):
            out = _to_records(out)
        bounds = np.cumsum([len(p) for p in parts])[:-1]
        return np.split(out, bounds)

    async def __call__(self, rows: np.ndarray) -> Any:
        out = await self._call(rows)
        return _from_records(out) if out.dtype.names else out


# BentoML's dispatcher may split one caller's rows over two model calls and then joins the
# two results with its array containers, so what it carries must be an array: a ModelOutput
# travels as one record per image with named fields (no column offsets to slice by).
def _to_records(out: ModelOutput) -> np.ndarray:
    fields = [("probs", np.float32, out.probs.shape[1:])]
    for name in ("embeddings", "logits"):
        value = getattr(out, name)
        if value is not None:
            fields.append((name, np.float32, value.shape[1:]))
    records = np.empty(len(out.probs), dtype=fields)
    for name, _, _ in fields:
        records[name] = getattr(out, name)
    return records


def _from_records(records: np.ndarray) -> ModelOutput:
    def field(name: str) -> np.ndarray | None:
        names = records.dtype.names or ()
        return np.ascontiguousarray(records[name]) if name in names else None

    return ModelOutput(field("probs"), field("embeddings"), field("logits"))
