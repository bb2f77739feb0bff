"""Evidently reports drawn as static pages: everything the snapshot holds is in plain HTML
tables (the ZenML dashboard runs no scripts), nothing is a script, and names are escaped."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from rxvision.config import MonitoringConfig
from rxvision.monitoring.report_html import ReportPages, drift_static_html, evidently_static_html


def _features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "label": rng.choice(["round-white", "oval-blue"], n),
            "brightness": rng.normal(0.5 + shift, 0.05, n),
            "width": rng.integers(40, 60, n).astype(float),
        }
    )


def _cell(page: str, row: str, header: str) -> str:
    """The text of the cell in ``row`` (first column) under ``header`` of the page's last table
    that has that header."""
    for tab in reversed(re.findall(r"<table>.*?</table>", page, re.DOTALL)):
        heads = re.findall(r"<th>(.*?)</th>", tab)
        if header not in heads:
            continue
        for tr in re.findall(r"<tr>(.*?)</tr>", tab, re.DOTALL):
            cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)
            if cells and cells[0] == row:
                return re.sub(r"<[^>]+>", "", cells[heads.index(header)])
    raise AssertionError(f"no cell ({row}, {header})")


def test_data_summary_page_shows_every_column_statistic_without_scripts() -> None:
    from evidently import Report
    from evidently.presets import DataSummaryPreset

    table = _features(60, seed=1)
    snapshot = Report([DataSummaryPreset()]).run(current_data=table, reference_data=None)
    page = evidently_static_html(snapshot.dict(), "Data summary", note="interactive: download")

    assert "<script" not in page.lower() and "interactive: download" in page
    assert _cell(page, "rows", "value") == "60"
    assert abs(float(_cell(page, "brightness", "mean")) - table["brightness"].mean()) < 1e-3
    assert float(_cell(page, "width", "max")) == table["width"].max()
    counts = table["label"].value_counts()
    shown = _cell(page, "label", "values")
    for name, count in counts.items():
        assert f"{name}: {count} (" in shown
    # the interactive report it came from is still drawn by scripts: that is why
    assert "<script" in snapshot.get_html_str(as_iframe=False).lower()


def test_drift_page_marks_the_shifted_column_and_states_the_decision() -> None:
    from rxvision.monitoring.drift import detect_drift

    cfg = MonitoringConfig(min_rows=10)
    result = detect_drift(
        _features(120, seed=2), _features(80, seed=3, shift=0.3), cfg, with_whylogs=False
    )
    page = drift_static_html(result)

    assert result.drifted and "<script" not in page.lower()
    assert "drift: " in page
    assert _cell(page, "brightness", "drifted") == "yes"
    assert _cell(page, "width", "drifted") == "no"
    assert f"current rows: {len(_features(80, 3))}" in page


def test_not_enough_traffic_is_a_page_saying_so() -> None:
    from rxvision.monitoring.drift import detect_drift

    result = detect_drift(_features(40, 4), _features(3, 5), MonitoringConfig(min_rows=10))
    page = drift_static_html(result)
    assert "not enough data" in page and "<table" not in page


def test_column_names_and_values_are_escaped() -> None:
    snapshot = {
        "metrics": [
            {
                "metric_name": "MeanValue(column=<script>x</script>)",
                "config": {"type": "evidently:metric_v2:MeanValue", "column": "<script>x</script>"},
                "value": 1.5,
            },
            {
                "metric_name": "UniqueValueCount(column=c)",
                "config": {"type": "evidently:metric_v2:UniqueValueCount", "column": "c"},
                "value": {"counts": {"<img onerror=1>": 2.0}, "shares": {"<img onerror=1>": 1.0}},
            },
        ],
        "tests": [],
    }
    page = evidently_static_html(snapshot, "t")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_report_pages_is_the_static_page_with_the_interactive_one_beside_it() -> None:
    pages = ReportPages("<html>static</html>", "<html><script></script></html>")
    assert pages == "<html>static</html>" and "script" in pages.interactive
    assert ReportPages("<html></html>").interactive == ""
