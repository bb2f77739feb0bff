"""The monitoring pipeline's decision as Prometheus gauges, for the alert rules and the
Grafana dashboard (ops/): a batch job cannot be scraped, so the gauges are written in the
text exposition format (the node exporter's textfile collector reads such files) and, where
a Pushgateway is configured, pushed to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

OUTCOMES = ("drift", "no_drift", "not_enough_data")
JOB = "rxvision_monitoring"


def drift_registry(
    result: dict[str, Any], model_version: str, now: float | None = None
) -> CollectorRegistry:
    """rxvision_drift_status (1 drift, 0 otherwise), the drifted share of columns, the mean
    confidence drop, the rows compared and when the check ran, labelled by model version."""
    registry = CollectorRegistry()
    labels = {"model_version": str(model_version)}

    def gauge(name: str, doc: str, value: float | None) -> None:
        if value is not None:
            Gauge(name, doc, list(labels), registry=registry).labels(**labels).set(float(value))

    gauge(
        "rxvision_drift_status",
        "1 when the last monitoring run found drift, else 0",
        1.0 if result.get("drifted") else 0.0,
    )
    gauge("rxvision_drift_share", "Share of feature columns that drifted", result.get("share"))
    gauge(
        "rxvision_drift_confidence_drop",
        "Mean top-1 confidence, reference minus current",
        result.get("confidence_drop"),
    )
    gauge(
        "rxvision_drift_current_rows",
        "Traffic rows in the analysed window",
        result.get("n_current"),
    )
    gauge(
        "rxvision_drift_last_run_timestamp_seconds",
        "When the monitoring pipeline last decided",
        time.time() if now is None else now,
    )
    outcome = Gauge(
        "rxvision_drift_outcome",
        "1 for the last run's outcome",
        [*labels, "outcome"],
        registry=registry,
    )
    for name in OUTCOMES:
        outcome.labels(outcome=name, **labels).set(1.0 if result.get("outcome") == name else 0.0)
    return registry


def export_drift_status(
    result: dict[str, Any], model_version: str, textfile: Path, pushgateway: str | None = None
) -> dict[str, Any]:
    """Write the gauges to ``textfile`` (atomically) and push them when ``pushgateway`` is
    set; returns where they went. A Pushgateway that does not answer is reported, not raised
    (the drift decision itself is already recorded)."""
    registry = drift_registry(result, model_version)
    textfile.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(textfile), registry)
    out: dict[str, Any] = {"textfile": str(textfile), "pushed": None}
    if pushgateway:
        try:
            push_to_gateway(pushgateway, job=JOB, registry=registry, timeout=10)
            out["pushed"] = pushgateway
        except OSError as exc:
            out["push_error"] = f"{pushgateway}: {exc}"
    return out
