"""RxVision's BentoML service: pill images in, top-k labels with probabilities out.

One service, ``RxVision``: each worker process holds the verified model (ONNX Runtime on CPU,
PyTorch+AMP on CUDA) and, where the deployment stored one, a fallback model (the previous
production version) behind a circuit breaker. A request guard (bentos/guard.py) checks size,
form, API key and origin before BentoML parses anything; the request then goes through the
one serving path (``rxvision.serving.classify``) with an adaptive batcher in front of each
model (BentoML's own dispatcher, in-process; see bentos/batching.py), is counted in /metrics
and logged for drift monitoring.

Configuration (read at import, because BentoML's decorators need the values then), each layer
over the one before:
  the profile              RXVISION_PROFILE (default ``demo``)
  the deployed sections    ``serving`` and ``monitoring`` as the deployment resolved them,
                           stored with the BentoML model (service_config.json)
  RXVISION_CONFIG          optional YAML
  RXVISION_OVERRIDES       optional dotted overrides, space separated (``serving.top_k=5``)
  RXVISION_MODEL_TAG       BentoML model tag (default ``rxvision-classifier:latest``)
  RXVISION_API_KEY         optional API key (or RXVISION_API_KEY_FILE, a file holding it)

Serve from the repository root:
  ``bentoml serve bentos.service:RxVision --host 127.0.0.1 --port 3000``
"""

from __future__ import annotations

import json
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
import starlette.responses

from bentos.batching import AdaptiveBatcher
from bentos.guard import GuardSettings, ImageRoute, RequestGuard
from bentos.store import (
    BUNDLE_SUBDIR,
    FALLBACK_SUBDIR,
    PROJECTOR_FILE,
    SERVICE_CONFIG_FILE,
)
from bentos.traffic import TrafficLogger, monitoring_service_config
from bentos.ui import page_app
from rxvision.config import RxVisionConfig, load_config, read_yaml
from rxvision.errors import RxVisionError
from rxvision.names import MODEL_NAME, STAGE_KEY, VERSION_NUMBER_KEY
from rxvision.serving import (
    CircuitBreaker,
    ImageLimits,
    InvalidImage,
    ModelBusy,
    ModelChain,
    ModelUnavailable,
    Predictor,
    ServedModel,
    classify,
    decode_image,
    direct_infer,
)
from rxvision.serving.explain import Explainer
from rxvision.serving.layout import worker_layout

log = logging.getLogger("rxvision.service")


# HTTP status per rejection reason (decode reasons from rxvision.serving plus request-level ones)
STATUS_BY_REASON = {
    "empty": 400,
    "empty_batch": 400,
    "not_an_image": 415,
    "unsupported_format": 415,
    "truncated": 422,
    "aspect_ratio": 422,
    "too_large": 413,
    "decompression_bomb": 413,
    "request_too_large": 413,
    "too_many_images": 413,
}


def model_tag() -> str:
    tag = os.environ.get("RXVISION_MODEL_TAG", "").strip() or f"{MODEL_NAME}:latest"
    return tag if ":" in tag else f"{tag}:latest"


def _stored_sections(model_path: Path | None) -> dict[str, Any]:
    """The serving/monitoring sections the deployment stored with the model ({} if none)."""
    if model_path is None or not (model_path / SERVICE_CONFIG_FILE).is_file():
        return {}
    return json.loads((model_path / SERVICE_CONFIG_FILE).read_text())


def service_config(model_path: Path | None = None) -> RxVisionConfig:
    """The RxVision config: profile, the model's stored sections, then the environment."""
    extra = _stored_sections(model_path)
    if os.environ.get("RXVISION_CONFIG"):
        for section, values in read_yaml(Path(os.environ["RXVISION_CONFIG"])).items():
            extra[section] = (
                {**extra.get(section, {}), **values} if isinstance(values, dict) else values
            )
    overrides = shlex.split(os.environ.get("RXVISION_OVERRIDES", ""))
    return load_config(os.environ.get("RXVISION_PROFILE", "demo"), extra or None, overrides)


def api_key() -> str | None:
    """RXVISION_API_KEY, else the content of the file RXVISION_API_KEY_FILE (a secret)."""
    key = os.environ.get("RXVISION_API_KEY", "").strip()
    if not key and os.environ.get("RXVISION_API_KEY_FILE"):
        path = Path(os.environ["RXVISION_API_KEY_FILE"])
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise RxVisionError(
                f"cannot read the API key file {path} ({exc})",
                "point RXVISION_API_KEY_FILE at a readable file",
            ) from None
    return key or None


def bundle_dir(model_path: Path) -> Path:
    """The model bundle inside a BentoML model folder (deployment saves it under bundle/)."""
    inner = Path(model_path) / BUNDLE_SUBDIR
    return inner if inner.is_dir() else Path(model_path)


_BENTO_MODEL = bentoml.models.BentoModel(model_tag())
_STORED = _BENTO_MODEL.stored
CFG = service_config(Path(_STORED.path) if _STORED is not None else None)
SERVING = CFG.serving
LAYOUT = worker_layout(SERVING)


# refusals by the guard and by the APIs, in one counter (created lazily by BentoML per worker)
REJECTED = bentoml.metrics.Counter(
    name="rxvision_rejected_inputs",
    documentation="Requests refused, by reason",
    labelnames=["reason"],
)


def _model_version(model: Any) -> str:
    """ZenML model version number from the BentoML labels when deployed by the pipeline, else
    the BentoML tag's version."""
    labels = dict(getattr(model.info, "labels", {}) or {}) if hasattr(model, "info") else {}
    return str(labels.get(VERSION_NUMBER_KEY) or model.tag.version)


def _fallback_version(folder: Path) -> str | None:
    meta = folder / "fallback.json"
    return str(json.loads(meta.read_text()).get("model_version")) if meta.is_file() else None


# the upload page for people at /ui (bentos/ui); the API and /docs stay where they are
@bentoml.asgi_app(page_app(), path="/ui")
@bentoml.service(
    name="rxvision",
    workers=LAYOUT.workers,
    traffic={"timeout": SERVING.request_timeout_s},
    monitoring=monitoring_service_config(SERVING),
)
class RxVision:
    """Public API: /classify (one image), /classify_batch (several), /model_info and, when
    ``serving.explain`` is on, /explain (a Grad-CAM PNG)."""

    bento_model = _BENTO_MODEL

    def __init__(self) -> None:
        from rxvision.monitoring import EmbeddingProjector

        self.ready = False
        path = Path(self.bento_model.path)
        # cheap: the torch model is loaded by the first /explain call, never when it is off
        self.explainer = Explainer(bundle_dir(path)) if SERVING.explain else None
        self.labels = dict(self.bento_model.info.labels or {})
        self.model_version = _model_version(self.bento_model)
        self.limits = ImageLimits.from_config(SERVING)
        self._metrics()
        models, load_errors = [], {}
        candidates = [("primary", bundle_dir(path), self.model_version)]
        if (path / FALLBACK_SUBDIR).is_dir():
            folder = path / FALLBACK_SUBDIR
            candidates.append(("fallback", folder, _fallback_version(folder) or "fallback"))
        for name, folder, version in candidates:
            try:
                models.append(self._load(name, folder, version))
            except Exception as exc:  # noqa: BLE001 - a model that cannot load gives way to the next
                load_errors[name] = f"{type(exc).__name__}: {exc}"[:500]
                log.error("model %s (%s) could not be loaded: %s", name, folder, load_errors[name])
                self.m_failures.labels(model=name).inc()
        if not models:
            raise RxVisionError(
                "no model could be loaded: "
                + "; ".join(f"{k}: {v}" for k, v in load_errors.items()),
                "re-run the deployment pipeline to store the model again",
            )
        self.models = ModelChain(models, load_errors, listener=self._on_model_event)
        self._show_active()
        primary = self.models.models[0].predictor
        self.info = primary.info
        projector = (
            EmbeddingProjector.load(path / PROJECTOR_FILE)
            if (path / PROJECTOR_FILE).is_file()
            else None
        )
        self.traffic = TrafficLogger(
            self.info.classes,
            model_version=primary.model_version,
            projector=projector,
            enabled=SERVING.monitoring,
            sample_rate=CFG.monitoring.traffic_sample_rate,
        )
        self.ready = True
        log.info(
            "model %s ready (%s; %s runtime; %d worker(s) x %s thread(s), %d batch(es) in flight, "
            "batching %s)",
            self.model_version,
            self.models.active.name,
            primary.runtime,
            LAYOUT.workers,
            LAYOUT.threads or "default",
            LAYOUT.concurrent_batches,
            "on" if SERVING.batching else "off",
        )

    def _load(self, name: str, folder: Path, version: str) -> ServedModel:
        predictor = Predictor.from_bundle(
            folder,
            runtime=SERVING.runtime,
            top_k=SERVING.top_k,
            model_version=version,
            threads=LAYOUT.threads,
            verify=True,
            spin_wait=SERVING.spin_wait,
        )
        predictor.warmup()
        if SERVING.batching:
            batcher = AdaptiveBatcher(
                predictor.infer,
                max_batch_size=SERVING.max_batch_size,
                max_latency_ms=SERVING.max_latency_ms,
                on_batch=self.m_batch_size.observe,
                concurrent_batches=LAYOUT.concurrent_batches,
            )
            infer = batcher.__call__
        else:
            plain = direct_infer(predictor)

            async def infer(batch):
                self.m_batch_size.observe(len(batch))
                return await plain(batch)

        breaker = CircuitBreaker(SERVING.breaker_failures, SERVING.breaker_reset_s)
        return ServedModel(name, predictor, infer, breaker)

    def _metrics(self) -> None:
        self.m_predictions = bentoml.metrics.Counter(
            name="rxvision_predictions",
            documentation="Predictions served, by top-1 class",
            labelnames=["label"],
        )
        self.m_confidence = bentoml.metrics.Histogram(
            name="rxvision_prediction_confidence",
            documentation="Top-1 probability of served predictions",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        )
        self.m_rejected = REJECTED
        self.m_batch_size = bentoml.metrics.Histogram(
            name="rxvision_batch_size",
            documentation="Images per model call (adaptive batching merges concurrent requests)",
            buckets=tuple(
                float(2**i) for i in range(max(1, SERVING.max_batch_size.bit_length()) + 1)
            ),
        )
        self.m_active = bentoml.metrics.Gauge(
            name="rxvision_model_active",
            documentation="1 for the model (primary/fallback) now serving",
            labelnames=["model"],
            multiprocess_mode="max",
        )
        self.m_failures = bentoml.metrics.Counter(
            name="rxvision_model_failures",
            documentation="Model load or inference failures, by model",
            labelnames=["model"],
        )
        self.m_served_by = bentoml.metrics.Counter(
            name="rxvision_model_answers",
            documentation="Requests answered, by model (primary/fallback)",
            labelnames=["model"],
        )
        # calibrated answers only (an uncalibrated bundle answers neither)
        self.m_uncertain = bentoml.metrics.Counter(
            name="rxvision_uncertain_answers",
            documentation="Answers whose label set holds several labels or whose confidence is low",
        )
        self.m_unknown = bentoml.metrics.Counter(
            name="rxvision_unknown_answers",
            documentation="Answers whose image looks like none of the known pills (OOD)",
        )

    def _show_active(self) -> None:
        active = self.models.active.name
        for name in ("primary", "fallback"):
            self.m_active.labels(model=name).set(1 if name == active else 0)

    def _on_model_event(self, event: str, model: ServedModel, detail: str) -> None:
        if event == "failure":
            self.m_failures.labels(model=model.name).inc()
        else:
            log.warning("model %s: %s; now serving %s", model.name, event, self.models.active.name)
        self._show_active()

    def __is_ready__(self) -> bool:
        return self.ready

    # ------------------------------------------------------------------ helpers
    def _error(
        self, ctx: bentoml.Context, reason: str, message: str, hint: str | None = None
    ) -> dict:
        self.m_rejected.labels(reason=reason).inc()
        ctx.response.status_code = STATUS_BY_REASON.get(reason, 400)
        body = {"reason": reason, "message": message}
        if hint:
            body["hint"] = hint
        return {"error": body}

    def _unavailable(self, ctx: bentoml.Context, reason: str, why: str, hint: str) -> dict:
        self.m_rejected.labels(reason=reason).inc()
        ctx.response.status_code = 503
        ctx.response.headers["Retry-After"] = str(SERVING.retry_after_s)
        return {"error": {"reason": reason, "message": why, "hint": hint}}

    async def _classify(self, ctx: bentoml.Context, files: list[Path]) -> dict:
        # counts, sizes and the in-flight limit were checked by the guard before parsing
        if not files:
            return self._error(
                ctx, "empty_batch", "no images in the request", "send one or more files as 'images'"
            )
        if len(files) > SERVING.max_images_per_request:
            return self._error(
                ctx,
                "too_many_images",
                f"{len(files)} images in one request; the limit is "
                f"{SERVING.max_images_per_request}",
                "split the images over several requests",
            )
        blobs = [Path(f).read_bytes() for f in files]
        try:
            result = await classify(blobs, self.models, self.limits)
        except InvalidImage as exc:
            self.m_rejected.labels(reason=exc.reason).inc()
            ctx.response.status_code = STATUS_BY_REASON.get(exc.reason, 400)
            return {"error": exc.to_dict()}
        except ModelBusy:
            return self._unavailable(
                ctx,
                "overloaded",
                "the model is busy (its batch queue cannot meet max_latency_ms)",
                f"retry after {SERVING.retry_after_s} s",
            )
        except ModelUnavailable as exc:
            return self._unavailable(
                ctx, "model_unavailable", exc.problem, exc.hint or "retry later"
            )
        self.m_served_by.labels(model=result.model.name).inc()
        for p in result.predictions:
            self.m_predictions.labels(label=p.label).inc()
            self.m_confidence.observe(p.confidence)
            if p.uncertain:
                self.m_uncertain.inc()
            if p.unknown:
                self.m_unknown.inc()
        if SERVING.monitoring and result.model is self.models.models[0]:  # drift is the primary's
            import asyncio

            await asyncio.to_thread(
                self.traffic.log_prediction,
                result.images,
                result.output.probs,
                file_sizes=result.file_sizes,
                embeddings=result.output.embeddings,
                uncertain=[p.uncertain for p in result.predictions],
                unknown=[p.unknown for p in result.predictions],
            )
        return result.to_dict()

    # --------------------------------------------------------------------- APIs
    @bentoml.api(route="/classify")
    async def classify(self, image: Path, ctx: bentoml.Context) -> dict:
        """One image (multipart field ``image``) -> top-k labels, probabilities, model version."""
        result = await self._classify(ctx, [image])
        return result["predictions"][0] if "predictions" in result else result

    @bentoml.api(route="/classify_batch")
    async def classify_batch(self, images: list[Path], ctx: bentoml.Context) -> dict:
        """Several images (multipart field ``images``, repeated) -> one prediction each, in
        order."""
        return await self._classify(ctx, images)

    @bentoml.api(route="/explain")
    async def explain(self, image: Path, ctx: bentoml.Context) -> dict:
        """One image (multipart field ``image``) -> PNG of the Grad-CAM map of the predicted
        class (and the attention map for the attention head). Off unless ``serving.explain``."""
        import asyncio

        if self.explainer is None:
            self.m_rejected.labels(reason="explain_disabled").inc()
            ctx.response.status_code = 404
            return {
                "error": {
                    "reason": "explain_disabled",
                    "message": "POST /explain is off in this deployment",
                    "hint": "set serving.explain: true (it loads the model with torch)",
                }
            }
        try:
            rgb = await asyncio.to_thread(decode_image, Path(image).read_bytes(), self.limits)
        except InvalidImage as exc:
            self.m_rejected.labels(reason=exc.reason).inc()
            ctx.response.status_code = STATUS_BY_REASON.get(exc.reason, 400)
            return {"error": exc.to_dict()}
        png = await asyncio.to_thread(self.explainer.explain, rgb)
        return starlette.responses.Response(png, media_type="image/png")

    @bentoml.api(route="/model_info")
    def model_info(self) -> dict:
        """Version, classes, metrics, stage and lineage of the served model, and which model
        (primary or fallback) answers now."""
        return {
            "model_version": self.model_version,
            "bentoml_tag": str(self.bento_model.tag),
            "stage": self.labels.get(STAGE_KEY, "unknown"),
            "classes": list(self.info.classes),
            "metrics": dict(self.info.metrics),
            "backbone": self.info.backbone,
            "normalization": dict(self.info.normalization),
            "sha256": self.info.sha256,
            "runtime": self.models.models[0].predictor.runtime,
            "workers": LAYOUT.workers,
            "serving": self.models.status(),
            "traffic_sample_rate": self.traffic.sample_rate,
            # coverage, thresholds, temperature and version; None for an uncalibrated bundle
            "calibration": _calibration(self.models.models[0].predictor),
            "explain": SERVING.explain,
            "labels": self.labels,
        }


def _calibration(predictor: Predictor) -> dict | None:
    cal = predictor.calibration
    return None if cal is None else cal.to_dict()


def _count_refusal(reason: str) -> None:
    REJECTED.labels(reason=reason).inc()


RxVision.add_asgi_middleware(
    RequestGuard,
    settings=GuardSettings(
        image_routes={
            "/classify": ImageRoute("image", multiple=False),
            "/classify_batch": ImageRoute("images", multiple=True),
            "/explain": ImageRoute("image", multiple=False),
        },
        json_routes=frozenset({"/model_info"}),
        max_request_bytes=SERVING.max_request_bytes,
        max_image_bytes=SERVING.max_image_bytes,
        max_images=SERVING.max_images_per_request,
        max_in_flight=SERVING.max_in_flight,
        body_timeout_s=SERVING.body_timeout_s,
        retry_after_s=SERVING.retry_after_s,
        api_key=api_key(),
        metrics_public=SERVING.metrics_public,
        cors_origins=tuple(SERVING.cors_origins),
        on_reject=_count_refusal,
    ),
)


__all__ = ["RxVision", "RxVisionError", "service_config"]
