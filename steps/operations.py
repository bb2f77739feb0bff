"""Operations steps: the monitoring decision as Prometheus gauges (ops/alerts.yml reads
``rxvision_drift_status``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from steps.common import DRIFT_METRICS


@step(enable_cache=False)
def export_drift_metrics(
    result: dict[str, Any], pushgateway: str | None = None
) -> Annotated[dict[str, Any], DRIFT_METRICS]:
    """Write the gauges to $RXVISION_HOME/metrics/rxvision_drift.prom (node exporter textfile
    format) and push them to ``pushgateway`` (or $RXVISION_PUSHGATEWAY) when set."""
    from rxvision.monitoring.prometheus import export_drift_status

    model = get_step_context().model
    home = Path(os.environ.get("RXVISION_HOME", ".rxvision"))
    out = export_drift_status(
        result,
        str(model.number) if model else "unknown",  # model_version is the number everywhere
        home / "metrics" / "rxvision_drift.prom",
        pushgateway or os.environ.get("RXVISION_PUSHGATEWAY") or None,
    )
    log_metadata({"prometheus": out})
    return out
