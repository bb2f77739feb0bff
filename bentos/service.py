"""RxVision's BentoML service: pill images in, top-k labels with probabilities out.

One service, ``RxVision``: each worker process holds the verified model (ONNX Runtime on CPU,
PyTorch+AMP on CUDA), validates and decodes uploads, preprocesses them, and sends them through
an adaptive batcher (BentoML's own dispatcher, in-process; see bentos/batching.py for why
not a second service), counts predictions/rejections in /metrics and logs traffic for drift
monitoring.

Configuration (read at import, because BentoML's decorators need the values then):
  RXVISION_MODEL_TAG   BentoML model tag (default ``rxvision-classifier:latest``)
  RXVISION_PROFILE     config profile (default ``demo``)
  RXVISION_CONFIG      optional YAML on top of the profile
  RXVISION_OVERRIDES   optional dotted overrides, space separated (``serving.max_batch_size=16``)

Serve from the repository root:  ``bentoml serve bentos.service:RxVision --port 3000``
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

try:
    import rxvision  # noqa: F401
except ImportError:  # inside a built Bento the library is shipped as src/src/rxvision
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rxvision.telemetry import disable_telemetry

disable_telemetry()

import bentoml
import numpy as np

from bentos.batching import AdaptiveBatcher, Overloaded
from bentos.store import BUNDLE_SUBDIR, MODEL_NAME, PROJECTOR_FILE
from bentos.traffic import TrafficLogger, monitoring_service_config
from bentos.ui import page_app
from rxvision.config import RxVisionConfig, load_config
from rxvision.errors import RxVisionError
from rxvision.serving import (
    ImageLimits,
    InvalidImage,
    Predictor,
    decode_image,
    top_k_predictions,
)
from rxvision.serving.layout import worker_layout

log = logging.getLogger("rxvision.service")


# HTTP status per rejection reason (decode reasons from rxvision.serving plus request-level ones)
STATUS_BY_REASON = {
    "empty": 400,
    "empty_batch": 400,
    "not_an_image": 415,
    "unsupported_format": 415,
    "truncated": 422,
    "too_large": 413,
    "decompression_bomb": 413,
    "too_many_images": 413,
}


def service_config() -> RxVisionConfig:
    """The RxVision config from the environment (see module docstring)."""
    overrides = shlex.split(os.environ.get("RXVISION_OVERRIDES", ""))
    return load_config(os.environ.get("RXVISION_PROFILE", "demo"), os.environ.get("RXVISION_CONFIG") or None, overrides)


def model_tag() -> str:
    tag = os.environ.get("RXVISION_MODEL_TAG", "").strip() or f"{MODEL_NAME}:latest"
    return tag if ":" in tag else f"{tag}:latest"


def bundle_dir(model_path: Path) -> Path:
    """The model bundle inside a BentoML model folder (deployment saves it under bundle/)."""
    inner = Path(model_path) / BUNDLE_SUBDIR
    return inner if inner.is_dir() else Path(model_path)


CFG = service_config()
SERVING = CFG.serving
LAYOUT = worker_layout(SERVING)


def _model_version(model: Any) -> str:
    """ZenML model version from the BentoML labels when deployed by the pipeline, else the tag."""
    labels = dict(getattr(model.info, "labels", {}) or {}) if hasattr(model, "info") else {}
    return str(labels.get("zenml_model_version") or model.tag.version)


# the upload page for people at /ui (bentos/ui); the API and /docs stay where they are
@bentoml.asgi_app(page_app(), path="/ui")
@bentoml.service(
    name="rxvision",
    workers=LAYOUT.workers,
    traffic={"timeout": SERVING.request_timeout_s},
    monitoring=monitoring_service_config(SERVING),
)
class RxVision:
    """Public API: /classify (one image), /classify_batch (several), /model_info."""

    bento_model = bentoml.models.BentoModel(model_tag())

    def __init__(self) -> None:
        from rxvision.monitoring import EmbeddingProjector

        self.ready = False
        path = Path(self.bento_model.path)
        self.labels = dict(self.bento_model.info.labels or {})
        self.model_version = _model_version(self.bento_model)
        self.predictor = Predictor.from_bundle(
            bundle_dir(path),
            runtime=SERVING.runtime,
            top_k=SERVING.top_k,
            model_version=self.model_version,
            threads=LAYOUT.threads,
            verify=True,
            spin_wait=SERVING.spin_wait,
        )
        self.info = self.predictor.info
        self.num_classes = len(self.info.classes)
        self.limits = ImageLimits.from_config(SERVING)
        self.in_flight = 0
        projector = EmbeddingProjector.load(path / PROJECTOR_FILE) if (path / PROJECTOR_FILE).is_file() else None
        self.traffic = TrafficLogger(
            self.info.classes, model_version=self.model_version, projector=projector, enabled=SERVING.monitoring
        )
        self.m_predictions = bentoml.metrics.Counter(
            name="rxvision_predictions", documentation="Predictions served, by top-1 class", labelnames=["label"]
        )
        self.m_confidence = bentoml.metrics.Histogram(
            name="rxvision_prediction_confidence",
            documentation="Top-1 probability of served predictions",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        )
        self.m_rejected = bentoml.metrics.Counter(
            name="rxvision_rejected_inputs", documentation="Requests refused, by reason", labelnames=["reason"]
        )
        self.m_batch_size = bentoml.metrics.Histogram(
            name="rxvision_batch_size",
            documentation="Images per model call (adaptive batching merges concurrent requests)",
            buckets=tuple(float(2**i) for i in range(max(1, SERVING.max_batch_size.bit_length()) + 1)),
        )
        self.batcher = (
            AdaptiveBatcher(
                self._infer,
                max_batch_size=SERVING.max_batch_size,
                max_latency_ms=SERVING.max_latency_ms,
                on_batch=self.m_batch_size.observe,
                concurrent_batches=LAYOUT.concurrent_batches,
            )
            if SERVING.batching
            else None
        )
        self.predictor.warmup()
        self.ready = True
        log.info(
            "model %s ready (%s runtime; %d worker(s) x %s thread(s), %d batch(es) in flight, batching %s)",
            self.model_version, self.predictor.runtime, LAYOUT.workers, LAYOUT.threads or "default",
            LAYOUT.concurrent_batches,
            "on" if self.batcher else "off",
        )

    def __is_ready__(self) -> bool:
        return self.ready

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N x C) with the embedding (N x D) appended column-wise, so one array
        goes through the batcher's merge and split."""
        probs, emb = self.predictor.predict_arrays(batch)
        return probs if emb is None else np.concatenate([probs, emb.astype(np.float32)], axis=1)

    # ------------------------------------------------------------------ helpers
    def _error(self, ctx: bentoml.Context, reason: str, message: str, hint: str | None = None, **extra: Any) -> dict:
        self.m_rejected.labels(reason=reason).inc()
        ctx.response.status_code = STATUS_BY_REASON.get(reason, 400)
        body = {"reason": reason, "message": message, **extra}
        if hint:
            body["hint"] = hint
        return {"error": body}

    def _overloaded(self, ctx: bentoml.Context, why: str) -> dict:
        self.m_rejected.labels(reason="overloaded").inc()
        ctx.response.status_code = 503
        ctx.response.headers["Retry-After"] = str(SERVING.retry_after_s)
        return {"error": {"reason": "overloaded", "message": why, "hint": f"retry after {SERVING.retry_after_s} s"}}

    def _decode_all(self, blobs: list[bytes]) -> tuple[list[np.ndarray], np.ndarray]:
        images = []
        for i, data in enumerate(blobs):
            try:
                images.append(decode_image(data, self.limits))
            except InvalidImage as exc:
                exc.index = i  # type: ignore[attr-defined]
                raise
        return images, self.predictor.preprocess(images)

    async def _call_model(self, batch: np.ndarray) -> np.ndarray | None:
        """Model output for ``batch`` through the adaptive batcher; None when it sheds load."""
        if self.batcher is None:
            self.m_batch_size.observe(len(batch))
            return await asyncio.to_thread(self._infer, batch)
        try:
            return await self.batcher(batch)
        except Overloaded:
            return None

    async def _classify(self, ctx: bentoml.Context, files: list[Path]) -> dict:
        if not files:
            return self._error(ctx, "empty_batch", "no images in the request", "send one or more files as 'images'")
        if len(files) > SERVING.max_images_per_request:
            return self._error(
                ctx,
                "too_many_images",
                f"{len(files)} images in one request; the limit is {SERVING.max_images_per_request}",
                "split the images over several requests",
            )
        if self.in_flight >= SERVING.max_in_flight:
            return self._overloaded(ctx, f"{self.in_flight} requests already in flight")
        self.in_flight += 1
        try:
            blobs = [Path(f).read_bytes() for f in files]
            try:
                images, batch = await asyncio.to_thread(self._decode_all, blobs)
            except InvalidImage as exc:
                index = getattr(exc, "index", 0)
                return self._error(ctx, exc.reason, exc.message, exc.hint, index=index)
            out = await self._call_model(batch)
            if out is None:
                return self._overloaded(ctx, "the model is busy (its batch queue cannot meet max_latency_ms)")
            probs = out[:, : self.num_classes]
            emb = out[:, self.num_classes :] if out.shape[1] > self.num_classes else None
            preds = [
                p.to_dict() for p in top_k_predictions(probs, self.info.classes, SERVING.top_k, self.model_version)
            ]
            for p in preds:
                self.m_predictions.labels(label=p["label"]).inc()
                self.m_confidence.observe(p["confidence"])
            if SERVING.monitoring:
                await asyncio.to_thread(
                    self.traffic.log_prediction, images, probs, file_sizes=[len(b) for b in blobs], embeddings=emb
                )
            return {"predictions": preds, "model_version": self.model_version}
        finally:
            self.in_flight -= 1

    # --------------------------------------------------------------------- APIs
    @bentoml.api(route="/classify")
    async def classify(self, image: Path, ctx: bentoml.Context) -> dict:
        """One image (multipart field ``image``) -> top-k labels, probabilities, model version."""
        result = await self._classify(ctx, [image])
        return result["predictions"][0] if "predictions" in result else result

    @bentoml.api(route="/classify_batch")
    async def classify_batch(self, images: list[Path], ctx: bentoml.Context) -> dict:
        """Several images (multipart field ``images``, repeated) -> one prediction each, in order."""
        return await self._classify(ctx, images)

    @bentoml.api(route="/model_info")
    def model_info(self) -> dict:
        """Version, classes, metrics, stage and lineage of the served model."""
        return {
            "model_version": self.model_version,
            "bentoml_tag": str(self.bento_model.tag),
            "stage": self.labels.get("zenml_model_stage", "unknown"),
            "classes": list(self.info.classes),
            "metrics": dict(self.info.metrics),
            "backbone": self.info.backbone,
            "normalization": dict(self.info.normalization),
            "sha256": self.info.sha256,
            "runtime": self.predictor.runtime,
            "workers": LAYOUT.workers,
            "labels": self.labels,
        }


__all__ = ["RxVision", "RxVisionError", "service_config"]
