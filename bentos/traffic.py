"""Service-side traffic logging: one row per served image (features + prediction, never
pixels or file names) through BentoML's monitoring API, into size-bounded rotating files.

How the service uses it (the contract; kept stable)::

    from bentos.traffic import TrafficLogger, monitoring_service_config

    @bentoml.service(monitoring=monitoring_service_config(cfg.serving), ...)
    class RxVisionService:
        def __init__(self):
            self.traffic = TrafficLogger(classes, model_version="3", projector=projector_or_None,
                                         enabled=cfg.serving.monitoring,
                                         sample_rate=cfg.monitoring.traffic_sample_rate)
        ...
        # after predicting a batch (decoded RGB uint8 images, softmax probs n x num_classes):
        self.traffic.log_prediction(images, probs, file_sizes=[len(b) for b in raw_bytes],
                                    embeddings=embeddings_or_None)

``log_prediction`` never raises: a failure is counted in ``traffic.errors`` and logged.

whylogs: the service does NOT keep whylogs profiles in memory. Per-window profiles are built
by the monitoring pipeline from these logged rows (``rxvision.monitoring.profiles``) and are
mergeable across workers and windows. That is the robust choice: each worker already writes
its own file, nothing is lost when a worker is killed between flushes, the request path stays
cheap, and a profile can be rebuilt for any window after the fact.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from rxvision.config import ServingConfig
from rxvision.monitoring.drift import TRUST_FLAGS
from rxvision.monitoring.features import (
    CATEGORICAL_FEATURES,
    IMAGE_FEATURES,
    PREDICTION_FEATURES,
    EmbeddingProjector,
    embedding_columns,
    image_features,
    prediction_features,
)
from rxvision.monitoring.traffic_log import LOGGED_AT, MODEL_VERSION, MONITOR_NAME, resolve_log_dir

logger = logging.getLogger(__name__)

# BentoML's default monitor rotates daily with no size bound; this logging config (BentoML
# formats {data_filename}/{schema_filename} into it) bounds each worker's files by size.
_LOG_CONFIG = """\
version: 1
disable_existing_loggers: false
loggers:
  bentoml_monitor_data:
    level: INFO
    handlers: [bentoml_monitor_data]
    propagate: false
  bentoml_monitor_schema:
    level: INFO
    handlers: [bentoml_monitor_schema]
    propagate: false
handlers:
  bentoml_monitor_data:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{{data_filename}}'
    maxBytes: {max_bytes}
    backupCount: {backups}
    encoding: utf8
  bentoml_monitor_schema:
    class: logging.handlers.RotatingFileHandler
    level: INFO
    formatter: bentoml_json
    filename: '{{schema_filename}}'
    maxBytes: 1048576
    backupCount: 1
    encoding: utf8
formatters:
  bentoml_json:
    class: pythonjsonlogger.json.JsonFormatter
    format: "()"
    validate: false
"""


def monitoring_options(cfg: ServingConfig, log_dir: Path | None = None) -> dict[str, str]:
    """Options of BentoML's default monitor: the log folder and a size-rotating logging
    config (``cfg.log_max_bytes`` per file, ``cfg.log_backups`` backups per worker).

    Writes ``<log_dir>/logging.yaml``; total disk use is bounded by
    workers x (log_backups + 1) x log_max_bytes.
    """
    folder = resolve_log_dir(log_dir if log_dir is not None else cfg.log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "logging.yaml"
    text = _LOG_CONFIG.format(max_bytes=int(cfg.log_max_bytes), backups=int(cfg.log_backups))
    if not config_file.is_file() or config_file.read_text() != text:
        config_file.write_text(text)
    return {"log_path": str(folder), "log_config_file": str(config_file)}


def monitoring_service_config(cfg: ServingConfig, log_dir: Path | None = None) -> dict[str, Any]:
    """The ``monitoring=`` argument of ``@bentoml.service``: default file monitor, enabled
    by ``cfg.monitoring``, size-bounded files in ``cfg.log_dir``."""
    return {
        "enabled": bool(cfg.monitoring),
        "type": "default",
        "options": monitoring_options(cfg, log_dir),
    }


def _column_specs(n_components: int) -> list[tuple[str, str, str]]:
    """(column, BentoML role, BentoML type) in the logged order."""
    specs = [(c, "feature", "numerical") for c in IMAGE_FEATURES]
    specs += [
        (c, "prediction", "categorical" if c in CATEGORICAL_FEATURES else "numerical")
        for c in PREDICTION_FEATURES
    ]
    specs += [(c, "feature", "numerical") for c in embedding_columns(n_components)]
    specs += [(c, "prediction", "numerical") for c in TRUST_FLAGS]
    specs += [(MODEL_VERSION, "feature", "categorical"), (LOGGED_AT, "feature", "numerical")]
    return specs


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _reset_monitor_record() -> None:
    """BentoML's monitor context does not clean up when its body raises; the next record in
    this context would then fail its own assertion. Clear the half-open record (internal
    names, hence guarded)."""
    try:
        from bentoml._internal.monitoring.base import MON_COLUMN_VAR, MON_DATAS_VAR

        MON_DATAS_VAR.set(None)
        MON_COLUMN_VAR.set(None)
    except Exception:  # best effort only: internal names may move
        logger.debug("could not reset BentoML's monitor record", exc_info=True)


def _forget_monitor_with_other_files(name: str, options: dict[str, str]) -> None:
    """BentoML keeps one monitor per name for the whole process, set up by its first use; a
    logger asking for other files (batch inference into another log_dir, a second state folder)
    would otherwise write into the first one's. Drop such a monitor so the next record sets
    up a new one (internal names, hence guarded)."""
    try:
        from bentoml._internal.monitoring import api

        existing = api._MONITOR_INSTANCES.get(name)
        if existing is not None and getattr(existing, "log_path", None) != options.get("log_path"):
            api._MONITOR_INSTANCES.pop(name, None)
    except Exception:  # best effort only: internal names may move
        logger.debug("could not reset BentoML's monitor %s", name, exc_info=True)


class TrafficLogger:
    """Logs served predictions for drift monitoring; one instance per service worker.

    ``errors`` counts batches that could not be logged, ``rows`` the rows written. Pass
    ``monitor_options`` (see :func:`monitoring_options`) to choose the files explicitly, e.g.
    outside ``bentoml serve``; otherwise the service's ``monitoring=`` config applies.
    """

    def __init__(
        self,
        classes: Sequence[str],
        *,
        model_version: str = "",
        projector: EmbeddingProjector | None = None,
        n_components: int | None = None,
        enabled: bool = True,
        sample_rate: float = 1.0,
        seed: int = 0,
        monitor_name: str = MONITOR_NAME,
        monitor_options: dict[str, str] | None = None,
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.model_version = str(model_version)
        self.projector = projector
        self.n_components = projector.n_components if projector is not None else (n_components or 0)
        self.enabled = enabled
        # monitoring.traffic_sample_rate: log this share of images (drift needs a sample,
        # not every image); seeded so a replay logs the same rows.
        self.sample_rate = float(sample_rate)
        self._rng = np.random.default_rng(seed)
        self.monitor_name = monitor_name
        self.monitor_options = monitor_options
        if monitor_options is not None:
            _forget_monitor_with_other_files(monitor_name, monitor_options)
        self.specs = _column_specs(self.n_components)
        self.errors = 0
        self.rows = 0

    def _columns(
        self,
        images: Sequence[np.ndarray],
        probs: Any,
        file_sizes: Sequence[int | None] | None,
        embeddings: Any,
        flags: dict[str, Sequence[bool | None]],
    ) -> dict[str, list[Any]]:
        n = len(images)
        p = (
            np.asarray(probs, dtype=np.float64).reshape(n, -1)
            if n
            else np.zeros((0, len(self.classes)))
        )
        preds = prediction_features(p, self.classes)
        sizes = list(file_sizes) if file_sizes is not None else [None] * n
        if len(sizes) != n:
            raise ValueError(f"{n} images but {len(sizes)} file sizes")
        rows = [image_features(img, size) | pred for img, size, pred in zip(images, sizes, preds)]
        emb_cols = embedding_columns(self.n_components)
        if emb_cols:
            if self.projector is not None and embeddings is not None:
                proj = self.projector.transform(np.asarray(embeddings).reshape(n, -1))
                for row, values in zip(rows, proj):
                    row.update(zip(emb_cols, (float(v) for v in values)))
            else:
                for row in rows:
                    row.update(dict.fromkeys(emb_cols, float("nan")))
        for name in TRUST_FLAGS:  # 1.0/0.0, NaN where the bundle is uncalibrated
            given = flags.get(name)
            values = [None] * n if given is None else list(given)
            if len(values) != n:
                raise ValueError(f"{n} images but {len(values)} {name} flags")
            for row, v in zip(rows, values):
                row[name] = float("nan") if v is None else float(bool(v))
        stamp = time.time()
        for row in rows:
            row[MODEL_VERSION] = self.model_version
            row[LOGGED_AT] = stamp
        return {name: [_json_safe(r[name]) for r in rows] for name, _, _ in self.specs}

    def log_prediction(
        self,
        images: Sequence[np.ndarray],
        probs: Any,
        *,
        file_sizes: Sequence[int | None] | None = None,
        embeddings: Any = None,
        uncertain: Sequence[bool | None] | None = None,
        unknown: Sequence[bool | None] | None = None,
    ) -> int:
        """Log one row per image of a served batch; returns the rows logged (0 on failure).

        images: decoded RGB uint8 arrays (HxWx3), as the service received them (any size).
        probs: softmax probabilities, shape (len(images), len(classes)).
        file_sizes: upload sizes in bytes, one per image (None: unknown).
        embeddings: pooled model embeddings (len(images), dim), used only with a projector.
        uncertain, unknown: the calibrated answers' flags, one per image (None: uncalibrated).
        Never raises.
        """
        if not self.enabled:
            return 0
        try:
            images = list(images)
            if not images:
                return 0
            flags = {"uncertain": uncertain, "unknown": unknown}
            if self.sample_rate < 1.0:
                n_in = len(images)
                keep = np.flatnonzero(self._rng.random(n_in) < self.sample_rate)
                if not len(keep):
                    return 0
                images = [images[i] for i in keep]
                probs = np.asarray(probs, dtype=np.float64).reshape(n_in, -1)[keep]
                if file_sizes is not None:
                    file_sizes = [list(file_sizes)[i] for i in keep]
                if embeddings is not None:
                    embeddings = np.asarray(embeddings).reshape(n_in, -1)[keep]
                flags = {
                    k: None if v is None else [list(v)[i] for i in keep] for k, v in flags.items()
                }
            columns = self._columns(images, probs, file_sizes, embeddings, flags)
        except Exception as exc:  # noqa: BLE001 - logging must never fail a request
            self.errors += 1
            logger.warning(
                "traffic logging skipped a batch (%d errors so far): %s", self.errors, exc
            )
            return 0
        try:
            kwargs: dict[str, Any] = {}
            if self.monitor_options is not None:
                kwargs = {"monitor_class": "default", "monitor_options": self.monitor_options}
            n = len(images)
            with bentoml.monitor(self.monitor_name, **kwargs) as mon:
                # BentoML records the schema from a monitor's first record and warns on every
                # repeated column inside it: the very first record holds one row only.
                first = 1 if getattr(mon, "columns_schema", {}) is None else n
                for name, role, kind in self.specs:
                    mon.log_batch(columns[name][:first], name, role, kind)
            if first < n:
                with bentoml.monitor(self.monitor_name, **kwargs) as mon:
                    for name, role, kind in self.specs:
                        mon.log_batch(columns[name][first:], name, role, kind)
        except Exception as exc:  # noqa: BLE001 - logging must never fail a request
            self.errors += 1
            _reset_monitor_record()
            logger.warning("traffic logging failed (%d errors so far): %s", self.errors, exc)
            return 0
        self.rows += n
        return n
