"""The operations files in ops/ are valid for the tools that read them: promtool accepts the
scrape config and the alert rules, the rules' unit tests pass (each alert fires on the series
that should fire it), and the Grafana dashboard is the generator's output over known series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops"
# the series the service (BentoML + bentos/service.py) and the monitoring pipeline export
KNOWN_SERIES = {
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_in_progress",
    "rxvision_predictions_total",
    "rxvision_prediction_confidence_bucket",
    "rxvision_prediction_confidence_count",
    "rxvision_rejected_inputs_total",
    "rxvision_batch_size_bucket",
    "rxvision_drift_status",
    "up",
}
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "max", "le", "and", "or"}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    return subprocess.run(
        [promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=["scrape-config", "alert-rules", "alert-rule-unit-tests"],
)
def test_promtool_accepts_the_ops_files(args) -> None:
    proc = _promtool(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_dashboard_is_generated_and_queries_known_series() -> None:
    sys.path.insert(0, str(OPS / "grafana"))
    try:
        import build_dashboard
    finally:
        sys.path.pop(0)
    on_disk = json.loads((OPS / "grafana" / "rxvision-service.json").read_text())
    assert on_disk == build_dashboard.dashboard(), "run python ops/grafana/build_dashboard.py"
    exprs = [t["expr"] for p in on_disk["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        names = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", stripped)) - PROMQL_WORDS
        names = {
            n
            for n in names
            if not re.fullmatch(r"http_response_code|reason|label|model_version", n)
        }
        assert names <= KNOWN_SERIES, (expr, names - KNOWN_SERIES)
        assert expr.count("(") == expr.count(")"), expr
