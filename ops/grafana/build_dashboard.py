"""Writes ops/grafana/rxvision-service.json, the Grafana dashboard of the RxVision service
(import it in Grafana: Dashboards -> New -> Import; pick your Prometheus data source).

    python ops/grafana/build_dashboard.py

The panels use the same series as ops/alerts.yml; tests/integration/test_operations.py
checks that every query parses with promtool-compatible syntax and names known metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("rxvision-service.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
CLASSIFY = 'endpoint=~"/classify.*"'

# (title, unit, [(legend, expr)], width)
PANELS = [
    (
        "Requests per second by status",
        "reqps",
        [
            (
                "{{http_response_code}}",
                (
                    "sum by (http_response_code) "
                    f"(rate(bentoml_service_request_total{{{CLASSIFY}}}[5m]))"
                ),
            )
        ],
        12,
    ),
    (
        "Latency of /classify",
        "s",
        [
            (
                f"p{q}",
                (
                    f"histogram_quantile(0.{q}, sum by (le) (rate("
                    f"bentoml_service_request_duration_seconds_bucket{{{CLASSIFY}}}[5m])))"
                ),
            )
            for q in ("50", "95", "99")
        ],
        12,
    ),
    (
        "5xx and 503 shares",
        "percentunit",
        [
            (
                "5xx (not 503)",
                (
                    f"sum(rate(bentoml_service_request_total{{{CLASSIFY}, "
                    f'http_response_code=~"5..", http_response_code!="503"}}[5m])) / '
                    f"sum(rate(bentoml_service_request_total{{{CLASSIFY}}}[5m]))"
                ),
            ),
            (
                "503 overloaded",
                (
                    f"sum(rate(bentoml_service_request_total{{{CLASSIFY}, "
                    f'http_response_code="503"}}[5m])) / '
                    f"sum(rate(bentoml_service_request_total{{{CLASSIFY}}}[5m]))"
                ),
            ),
        ],
        8,
    ),
    (
        "Uncertain predictions (confidence <= 0.5)",
        "percentunit",
        [
            (
                "uncertain",
                (
                    'sum(rate(rxvision_prediction_confidence_bucket{le="0.5"}[30m])) / '
                    "sum(rate(rxvision_prediction_confidence_count[30m]))"
                ),
            )
        ],
        8,
    ),
    (
        "Rejected inputs by reason",
        "reqps",
        [("{{reason}}", "sum by (reason) (rate(rxvision_rejected_inputs_total[5m]))")],
        8,
    ),
    (
        "Predictions by class",
        "reqps",
        [("{{label}}", "sum by (label) (rate(rxvision_predictions_total[15m]))")],
        12,
    ),
    (
        "Images per model call (adaptive batching)",
        "short",
        [
            ("p50", "histogram_quantile(0.5, sum by (le) (rate(rxvision_batch_size_bucket[5m])))"),
            ("p95", "histogram_quantile(0.95, sum by (le) (rate(rxvision_batch_size_bucket[5m])))"),
        ],
        12,
    ),
    (
        "Drift status (monitoring pipeline; 1 = drift)",
        "short",
        [("version {{model_version}}", "max by (model_version) (rxvision_drift_status)")],
        12,
    ),
    (
        "Requests in progress",
        "short",
        [("in progress", "sum(bentoml_service_request_in_progress)")],
        12,
    ),
]


def panel(
    index: int, title: str, unit: str, targets: list[tuple[str, str]], width: int, x: int, y: int
) -> dict:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict:
    panels, x, y = [], 0, 0
    for i, (title, unit, targets, width) in enumerate(PANELS):
        if x + width > 24:
            x, y = 0, y + 8
        panels.append(panel(i, title, unit, targets, width, x, y))
        x += width
    return {
        "uid": "rxvision-service",
        "title": "RxVision service",
        "tags": ["rxvision", "bentoml"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
