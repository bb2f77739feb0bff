"""Drift between the training reference and served traffic: Evidently 0.7 data drift on the
feature table (images, embedding projection and the predicted-class mix), a confidence-drop
rule, and whylogs' per-column profile comparison beside it.

Decision: drift when at least ``cfg.drift_share`` of the compared columns drift, when mean
confidence fell by more than ``cfg.max_confidence_drop``, or when the share of uncertain or
unknown answers rose over the evaluation's rates by more than ``cfg.max_uncertain_rise`` /
``cfg.max_unknown_rise`` (a calibrated model abstaining more is the first sign of images it was
not trained for). Fewer than ``cfg.min_rows`` current rows is its own outcome ("not enough
data"), never an alarm.
"""

from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from rxvision.config import MonitoringConfig
from rxvision.errors import RxVisionError
from rxvision.monitoring.features import CATEGORICAL_FEATURES, IMAGE_FEATURES, PREDICTION_FEATURES
from rxvision.monitoring.traffic_log import BENTOML_COLUMNS, LOGGED_AT, MODEL_VERSION

logger = logging.getLogger(__name__)

Outcome = Literal["drift", "no_drift", "not_enough_data"]
# the calibrated answers' flags the traffic log records (1.0/0.0; NaN when uncalibrated);
# compared as rates with the evaluation's uncertain_rate / unknown_rate, not by Evidently
TRUST_FLAGS: tuple[str, ...] = ("uncertain", "unknown")
_BOOKKEEPING = (*BENTOML_COLUMNS, LOGGED_AT, MODEL_VERSION, *TRUST_FLAGS)


@dataclass
class RateRise:
    """The share of one kind of answer (uncertain, unknown) in traffic vs the evaluation."""

    flag: str
    reference: float
    current: float
    limit: float

    @property
    def rise(self) -> float:
        return self.current - self.reference

    @property
    def drifted(self) -> bool:
        return self.rise > self.limit


@dataclass
class ColumnDrift:
    """One column's Evidently drift test."""

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """What the monitoring pipeline decides and shows (``html`` is Evidently's report)."""

    outcome: Outcome
    drifted: bool
    reason: str
    n_reference: int
    n_current: int
    drifted_columns: list[str] = field(default_factory=list)
    columns: dict[str, ColumnDrift] = field(default_factory=dict)
    share: float = 0.0
    prediction_drift: bool = False
    confidence_reference: float | None = None
    confidence_current: float | None = None
    confidence_drop: float | None = None
    skipped_columns: list[str] = field(default_factory=list)
    rates: dict[str, RateRise] = field(default_factory=dict)
    html: str = ""
    evidently: dict[str, Any] = field(default_factory=dict)
    whylogs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def scores(self) -> dict[str, float]:
        """Per-column drift score (p-value or distance, see ``columns[c].method``)."""
        return {name: c.score for name, c in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no HTML), for run / model-version metadata."""

        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 6)

        return {
            "outcome": self.outcome,
            "drifted": self.drifted,
            "reason": self.reason,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drifted_columns": list(self.drifted_columns),
            "share": num(self.share),
            "prediction_drift": self.prediction_drift,
            "confidence_reference": num(self.confidence_reference),
            "confidence_current": num(self.confidence_current),
            "confidence_drop": num(self.confidence_drop),
            "skipped_columns": list(self.skipped_columns),
            "rates": {
                n: {
                    "reference": num(r.reference),
                    "current": num(r.current),
                    "rise": num(r.rise),
                    "limit": r.limit,
                    "drifted": r.drifted,
                }
                for n, r in self.rates.items()
            },
            "columns": {
                n: {
                    "method": c.method,
                    "score": num(c.score),
                    "threshold": c.threshold,
                    "drifted": c.drifted,
                }
                for n, c in self.columns.items()
            },
            "whylogs": json.loads(self.whylogs.to_json(orient="records"))
            if len(self.whylogs)
            else [],
        }

    def report_html(self) -> str:
        """Evidently's report, or a small page saying why there is none (not enough data)."""
        if self.html:
            return self.html
        text = html.escape(self.summary()).replace("\n", "<br>")
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>RxVision drift</title></head>"
            f"<body><h2>RxVision drift check</h2><p>{text}</p></body></html>"
        )

    def summary(self) -> str:
        """A few lines for the log and the run summary."""
        head = {
            "drift": "DRIFT DETECTED",
            "no_drift": "no drift",
            "not_enough_data": "not enough data",
        }
        lines = [f"{head[self.outcome]}: {self.reason}"]
        if self.columns:
            lines.append(
                f"  columns drifted: {len(self.drifted_columns)}/{len(self.columns)} "
                f"({self.share:.0%}): {', '.join(self.drifted_columns) or '-'}"
            )
        if self.confidence_drop is not None:
            lines.append(
                f"  mean confidence: reference {self.confidence_reference:.3f}, "
                f"current {self.confidence_current:.3f} (drop {self.confidence_drop:+.3f})"
            )
        for r in self.rates.values():
            lines.append(
                f"  {r.flag} answers: reference {r.reference:.3f}, current {r.current:.3f} "
                f"(rise {r.rise:+.3f}, limit {r.limit})"
            )
        return "\n".join(lines)


def _comparable_columns(
    reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[list[str], list[str], list[str]]:
    """(numerical, categorical, skipped): shared columns that hold values on both sides."""
    known = set(IMAGE_FEATURES) | set(PREDICTION_FEATURES)
    shared = [c for c in reference.columns if c in current.columns and c not in _BOOKKEEPING]
    numerical, categorical, skipped = [], [], []
    for col in shared:
        if reference[col].isna().all() or current[col].isna().all():
            skipped.append(col)
        elif col in CATEGORICAL_FEATURES or (col not in known and reference[col].dtype == object):
            categorical.append(col)
        else:
            numerical.append(col)
    return numerical, categorical, skipped


def _is_drifted(method: str, score: float, threshold: float) -> bool:
    # Evidently's convention: p-value tests drift at or below the threshold, distances at or above.
    if not math.isfinite(score):
        return False
    return score <= threshold if "p_value" in method else score >= threshold


def _mean_confidence(df: pd.DataFrame) -> float | None:
    if "confidence" not in df.columns:
        return None
    values = pd.to_numeric(df["confidence"], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _flag_share(df: pd.DataFrame, flag: str) -> float | None:
    if flag not in df.columns:
        return None
    values = pd.to_numeric(df[flag], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def rate_rises(
    current: pd.DataFrame, reference_rates: dict[str, float | None] | None, cfg: MonitoringConfig
) -> dict[str, RateRise]:
    """Per flag with a reference rate (``uncertain_rate``/``unknown_rate`` of the evaluation)
    and logged values (a calibrated model served the traffic): the rise of its share."""
    limits = {"uncertain": cfg.max_uncertain_rise, "unknown": cfg.max_unknown_rise}
    out = {}
    for flag in TRUST_FLAGS:
        ref = (reference_rates or {}).get(f"{flag}_rate")
        cur = _flag_share(current, flag)
        if ref is not None and math.isfinite(float(ref)) and cur is not None:
            out[flag] = RateRise(flag, float(ref), cur, limits[flag])
    return out


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: MonitoringConfig,
    with_html: bool = True,
    with_whylogs: bool = True,
    reference_rates: dict[str, float | None] | None = None,
) -> DriftResult:
    """Compare served traffic (``current``) with the training reference feature table.

    Both are tables from :func:`rxvision.monitoring.features.feature_table` (or the traffic
    log, whose extra bookkeeping columns are ignored). ``reference_rates`` holds the model
    version's evaluation ``uncertain_rate`` and ``unknown_rate`` (absent for an uncalibrated
    model: no rate rule). Raises RxVisionError when the reference is empty or the tables
    share no feature column.
    """
    n_ref, n_cur = len(reference), len(current)
    if n_ref < 2:
        raise RxVisionError(
            f"the reference feature table has {n_ref} rows",
            "run the training pipeline, which stores reference features with the model version",
        )
    if n_cur < cfg.min_rows:
        reason = f"not enough data: n={n_cur} < min_rows={cfg.min_rows}"
        logger.info("drift check skipped: %s", reason)
        return DriftResult("not_enough_data", False, reason, n_ref, n_cur)

    numerical, categorical, skipped = _comparable_columns(reference, current)
    if not numerical and not categorical:
        raise RxVisionError(
            "reference and current traffic share no feature column with values",
            "check that both come from rxvision.monitoring.features (same model version)",
        )
    cols = numerical + categorical
    ref = reference[cols].copy()
    cur = current[cols].copy()
    for col in numerical:
        ref[col] = pd.to_numeric(ref[col], errors="coerce").astype(float)
        cur[col] = pd.to_numeric(cur[col], errors="coerce").astype(float)
    for col in categorical:
        ref[col] = ref[col].astype(str)
        cur[col] = cur[col].astype(str)

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=cols,
        drift_share=cfg.drift_share,
        method=cfg.drift_method,
        threshold=cfg.drift_threshold,
    )
    with np.errstate(all="ignore"):
        snapshot = Report([preset]).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    report = snapshot.dict()
    columns: dict[str, ColumnDrift] = {}
    for metric in report["metrics"]:
        conf = metric.get("config", {})
        if not str(conf.get("type", "")).endswith("ValueDrift"):
            continue
        score = float(metric["value"]) if metric["value"] is not None else float("nan")
        method, threshold = str(conf.get("method")), float(conf.get("threshold"))
        columns[conf["column"]] = ColumnDrift(
            conf["column"], method, score, threshold, _is_drifted(method, score, threshold)
        )
    drifted_columns = [c for c in cols if c in columns and columns[c].drifted]
    share = len(drifted_columns) / max(len(columns), 1)

    conf_ref, conf_cur = _mean_confidence(reference), _mean_confidence(current)
    drop = None if conf_ref is None or conf_cur is None else conf_ref - conf_cur
    prediction_drift = "predicted_class" in drifted_columns
    reasons = []
    if share >= cfg.drift_share:
        reasons.append(
            f"{len(drifted_columns)}/{len(columns)} columns drifted (share {share:.2f} >= "
            f"{cfg.drift_share})"
        )
    if drop is not None and drop > cfg.max_confidence_drop:
        reasons.append(f"mean confidence fell by {drop:.3f} (> {cfg.max_confidence_drop})")
    rates = rate_rises(current, reference_rates, cfg)
    for r in rates.values():
        if r.drifted:
            reasons.append(
                f"{r.flag} answers rose from {r.reference:.3f} to {r.current:.3f} "
                f"(+{r.rise:.3f} > {r.limit})"
            )
    drifted = bool(reasons)
    if not drifted:
        reasons.append(
            f"{len(drifted_columns)}/{len(columns)} columns drifted (share {share:.2f} < "
            f"{cfg.drift_share})"
            + (
                f", confidence drop {drop:.3f} <= {cfg.max_confidence_drop}"
                if drop is not None
                else ""
            )
        )
    if prediction_drift:
        reasons.append("the predicted-class mix changed")

    comparison = pd.DataFrame()
    if with_whylogs:
        from rxvision.monitoring.profiles import compare_profiles, profile_frame

        comparison = compare_profiles(profile_frame(ref), profile_frame(cur))
    result = DriftResult(
        outcome="drift" if drifted else "no_drift",
        drifted=drifted,
        reason="; ".join(reasons),
        n_reference=n_ref,
        n_current=n_cur,
        drifted_columns=drifted_columns,
        columns=columns,
        share=share,
        prediction_drift=prediction_drift,
        confidence_reference=conf_ref,
        confidence_current=conf_cur,
        confidence_drop=drop,
        skipped_columns=skipped,
        rates=rates,
        html=snapshot.get_html_str(as_iframe=False) if with_html else "",
        evidently=report,
        whylogs=comparison,
    )
    (logger.warning if drifted else logger.info)("%s", result.summary())
    return result
