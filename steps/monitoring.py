"""Monitoring steps: read the window's served traffic, compare it with the production model
version's reference features, record the decision, alert. Thin adapters around
rxvision.monitoring."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from rxvision.monitoring.report_html import ReportPages
from steps.common import (
    ALERTED,
    DRIFT_REPORT,
    DRIFT_RESULT,
    TRAFFIC_FEATURES,
    TRAFFIC_PROFILE,
    WHYLOGS_DRIFT,
    to_config,
)
from steps.report_pages import ReportPagesMaterializer

logger = get_logger(__name__)


@step(enable_cache=False)
def load_traffic(
    log_dir: str, window: str, now: float
) -> Annotated[pd.DataFrame, TRAFFIC_FEATURES]:
    """The rows the service logged in the last ``window`` before ``now`` (unix seconds)."""
    from rxvision.monitoring.traffic_log import parse_window, read_traffic_log

    df = read_traffic_log(Path(log_dir), parse_window(window), now=now)
    since = datetime.fromtimestamp(now - parse_window(window).total_seconds(), tz=timezone.utc)
    log_metadata(
        {
            "traffic_rows": len(df),
            "window": window,
            "since_utc": since.isoformat(),
            "log_dir": log_dir,
        }
    )
    logger.info("traffic: %d rows logged in the last %s under %s", len(df), window, log_dir)
    return df


@step(enable_cache=False, output_materializers={DRIFT_REPORT: ReportPagesMaterializer})
def check_drift(
    reference: pd.DataFrame,
    traffic: pd.DataFrame,
    config: dict[str, Any],
    model_version_id: str | None = None,
) -> tuple[
    Annotated[ReportPages, DRIFT_REPORT],
    Annotated[dict[str, Any], DRIFT_RESULT],
    Annotated[pd.DataFrame, WHYLOGS_DRIFT],
    Annotated[bytes, TRAFFIC_PROFILE],
]:
    """Evidently report + whylogs comparison; the decision goes to the step, the run and the
    model version as metadata. The report is a static page (what the dashboard shows) with
    Evidently's interactive HTML beside it."""
    from zenml.client import Client

    from rxvision.monitoring.drift import detect_drift
    from rxvision.monitoring.profiles import traffic_profile
    from rxvision.monitoring.report_html import drift_static_html

    cfg = to_config(config)
    # the evaluation's uncertain_rate / unknown_rate, recorded on the version at registration
    version_id = UUID(model_version_id) if model_version_id else get_step_context().model.id
    version = Client().get_model_version(model_version_name_or_number_or_id=version_id)
    evaluated = version.run_metadata.get("metrics")
    rates = (
        {k: evaluated.get(k) for k in ("uncertain_rate", "unknown_rate")}
        if isinstance(evaluated, dict)
        else {}
    )
    logger.info(
        "evaluation rates of version %s: %s", version.number, rates or "none (uncalibrated)"
    )
    result = detect_drift(reference, traffic, cfg.monitoring, reference_rates=rates)
    summary = result.to_dict()
    meta = {
        k: summary[k]
        for k in (
            "outcome",
            "drifted",
            "reason",
            "n_current",
            "drifted_columns",
            "share",
            "prediction_drift",
            "confidence_drop",
            "rates",
        )
    }
    meta = {"drift": {k: v for k, v in meta.items() if v not in (None, {})}}
    log_metadata(meta)
    log_metadata(meta, run_id_name_or_prefix=get_step_context().pipeline_run.id)
    if model_version_id:
        log_metadata(meta, model_version_id=UUID(model_version_id))
    else:  # the pipeline's model version
        log_metadata(meta, infer_model=True)
    profile = traffic_profile(traffic) if len(traffic) else None
    return (
        ReportPages(drift_static_html(result), result.html),
        summary,
        result.whylogs,
        profile.serialize() if profile is not None else b"",
    )


@step(enable_cache=False)
def alert_on_drift(result: dict[str, Any]) -> Annotated[bool, ALERTED]:
    """Post to the stack's alerter when drift was found, naming where the drift report is;
    without an alerter, warn loudly."""
    from zenml.client import Client

    if not result.get("drifted"):
        logger.info("no drift alert: %s", result.get("reason"))
        return False
    context = get_step_context()
    run = Client().get_pipeline_run(context.pipeline_run.id)
    report = run.steps["check_drift"].outputs[DRIFT_REPORT][0]
    message = (
        f":rotating_light: RxVision drift detected: {result['reason']} "
        f"(columns: {', '.join(result['drifted_columns']) or '-'}). "
        f"Report: {report.uri} (run {run.name}, step check_drift, artifact {DRIFT_REPORT})"
    )
    alerter = Client().active_stack.alerter
    if alerter is None:
        logger.warning("!" * 72)
        logger.warning("DRIFT DETECTED (no alerter in this stack): %s", result["reason"])
        logger.warning("!" * 72)
        return False
    params = None
    if alerter.flavor == "rxvision_webhook":
        from stacks.webhook_alerter import WebhookAlerterParameters

        params = WebhookAlerterParameters(
            payload={
                "event": "drift",
                "pipeline_run": run.name,
                "pipeline_run_id": str(run.id),
                "model_version": str(context.model.number) if context.model else None,
                "report_uri": report.uri,
                "report_artifact_id": str(report.id),
                "reason": result["reason"],
                "drifted_columns": list(result["drifted_columns"]),
            }
        )
    posted = bool(alerter.post(message, params))
    logger.warning("drift alert %s via %s", "posted" if posted else "NOT posted", alerter.name)
    return posted
