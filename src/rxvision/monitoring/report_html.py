"""Evidently reports as static HTML pages, for viewers that run no JavaScript.

Evidently 0.7 draws its HTML report with JavaScript; the ZenML dashboard shows HTML in a
sandboxed frame with scripts disabled, where that report is a blank box. These pages are
drawn from the report's snapshot (``Snapshot.dict()``: every metric's config and value, and
the tests' outcomes) as plain tables, with no ``<script>``. :class:`ReportPages` carries such a
page together with Evidently's own interactive HTML, so both can be kept: the static page to
look at, the interactive one to download and open in a browser.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from rxvision.monitoring.drift import DriftResult

# what a metric type is called in a table header (types not listed keep their own name)
METRIC_LABELS = {
    "RowCount": "rows",
    "ColumnCount": "columns",
    "DuplicatedRowCount": "duplicated rows",
    "DuplicatedColumnsCount": "duplicated columns",
    "AlmostDuplicatedColumnsCount": "almost duplicated columns",
    "AlmostConstantColumnsCount": "almost constant columns",
    "ConstantColumnsCount": "constant columns",
    "EmptyRowsCount": "empty rows",
    "EmptyColumnsCount": "empty columns",
    "DatasetMissingValueCount": "missing values",
    "DriftedColumnsCount": "drifted columns",
    "MissingValueCount": "missing",
    "UniqueValueCount": "values",
    "MinValue": "min",
    "MaxValue": "max",
    "MeanValue": "mean",
    "StdValue": "std",
    "MedianValue": "median",
    "ValueDrift": "drift score",
}
TOP_VALUES = 6  # categories shown per column; the rest are summed as "other"

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:16px;color:#1f2937}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}
p.note{color:#4b5563;font-size:13px;margin:4px 0 12px}
table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #d1d5db;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b91c1c;font-weight:600}.good{color:#15803d;font-weight:600}
.bar{display:inline-block;height:9px;background:#6366f1;margin-right:4px;vertical-align:middle}
.decision{font-size:15px;padding:8px 12px;border-radius:6px;display:inline-block}
.decision.bad{background:#fee2e2}.decision.good{background:#dcfce7}
"""


class ReportPages(str):
    """A report as a script-free HTML page (the string itself) with the interactive HTML
    it came from beside it (``interactive``; empty when there is none)."""

    interactive: str

    def __new__(cls, static: str, interactive: str = "") -> Self:
        page = super().__new__(cls, static)
        page.interactive = interactive
        return page


def evidently_static_html(snapshot: Mapping[str, Any], title: str, note: str = "") -> str:
    """A page of an Evidently snapshot's metrics: dataset-wide values, one row per column,
    and the tests' outcomes."""
    body = [f"<h1>{_e(title)}</h1>"]
    if note:
        body.append(f"<p class='note'>{_e(note)}</p>")
    body.append(snapshot_tables(snapshot))
    return page(title, body)


def snapshot_tables(snapshot: Mapping[str, Any]) -> str:
    """The HTML tables of a snapshot (``Snapshot.dict()`` or ``json.loads(Snapshot.json())``)."""
    dataset: list[tuple[str, str]] = []
    columns: dict[str, dict[str, str]] = {}
    headers: list[str] = []
    for metric in snapshot.get("metrics", []):
        config = {k: _plain(v) for k, v in (metric.get("config") or {}).items()}
        label = _metric_label(config, str(metric.get("metric_name", "?")))
        value = _plain(metric.get("value"))
        column = config.get("column")
        if column is None:
            dataset.append((label, _format_value(value)))
            continue
        columns.setdefault(str(column), {})[label] = _format_value(value)
        if label not in headers:
            headers.append(label)
        if _kind(config) == "ValueDrift":
            drifted = _is_drifted(str(config.get("method", "")), value, config.get("threshold"))
            columns[str(column)]["drifted"] = _yes_no(drifted)
            columns[str(column)]["method"] = _e(
                f"{config.get('method')} ({config.get('threshold')})"
            )
            for extra in ("method", "drifted"):
                if extra not in headers:
                    headers.append(extra)
    out = []
    if dataset:
        out.append("<h2>Dataset</h2>")
        out.append(table(("metric", "value"), dataset))
    if columns:
        out.append("<h2>Columns</h2>")
        rows = [
            (_e(name), *(values.get(h, "") for h in headers))
            for name, values in sorted(columns.items())
        ]
        out.append(table(("column", *headers), rows, escape=False))
    tests = snapshot.get("tests") or []
    if tests:
        out.append("<h2>Tests</h2>")
        rows = [
            (
                _e(t.get("name", "")),
                _status(str(_plain(t.get("status", "")))),
                _e(t.get("description", "")),
            )
            for t in tests
        ]
        out.append(table(("test", "status", "description"), rows, escape=False))
    if not out:
        out.append("<p>The report holds no metrics.</p>")
    return "\n".join(out)


def drift_static_html(result: DriftResult, title: str = "RxVision drift check") -> str:
    """The monitoring pipeline's drift decision as a page: outcome and reason, each column's
    test, confidence and answer-rate changes, whylogs' comparison, Evidently's metrics."""
    bad = result.drifted
    body = [
        f"<h1>{_e(title)}</h1>",
        (
            f"<p class='decision {'bad' if bad else 'good'}'>"
            f"{_e(result.outcome.replace('_', ' '))}: {_e(result.reason)}</p>"
        ),
        (
            f"<p class='note'>reference rows: {result.n_reference}; current rows: "
            f"{result.n_current}; drifted columns: {len(result.drifted_columns)}/"
            f"{len(result.columns)} (share {result.share:.2f})</p>"
        ),
    ]
    if result.columns:
        body.append("<h2>Columns</h2>")
        rows = [
            (_e(c.column), _e(c.method), _num(c.score), _num(c.threshold), _yes_no(c.drifted))
            for c in result.columns.values()
        ]
        body.append(table(("column", "test", "score", "threshold", "drifted"), rows, escape=False))
    if result.confidence_drop is not None or result.rates:
        body.append("<h2>Answers</h2>")
        rows = []
        if result.confidence_drop is not None:
            rows.append(
                (
                    "mean confidence",
                    _num(result.confidence_reference),
                    _num(result.confidence_current),
                    _num(-result.confidence_drop),
                )
            )
        for r in result.rates.values():
            rows.append((f"{_e(r.flag)} share", _num(r.reference), _num(r.current), _num(r.rise)))
        body.append(table(("", "reference", "current", "change"), rows, escape=False))
    if len(result.whylogs):
        body.append("<h2>whylogs profile comparison</h2>")
        frame = result.whylogs
        rows = [tuple(_format_value(_plain(v)) for v in rec) for rec in frame.itertuples(False)]
        body.append(table(tuple(str(c) for c in frame.columns), rows, escape=False))
    if result.skipped_columns:
        body.append(
            f"<p class='note'>not compared (no values on one side): "
            f"{_e(', '.join(result.skipped_columns))}</p>"
        )
    if result.evidently:
        body.append("<h2>Evidently metrics</h2>")
        body.append(snapshot_tables(result.evidently))
    return page(title, body)


def page(title: str, body: Iterable[str]) -> str:
    """A complete, self-contained HTML document with the shared style and no scripts."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], escape: bool = True) -> str:
    """An HTML table; cells are escaped unless ``escape`` is False (already HTML)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = []
        for cell in row:
            text = _e(cell) if escape else str(cell)
            numeric = bool(re.fullmatch(r"[-+]?[\d.,e%]+", text))
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _kind(config: Mapping[str, Any]) -> str:
    return str(config.get("type", "")).rsplit(":", 1)[-1]


def _metric_label(config: Mapping[str, Any], metric_name: str) -> str:
    kind = _kind(config)
    if not kind:
        return metric_name
    label = METRIC_LABELS.get(kind, kind)
    if kind == "QuantileValue" and "quantile" in config:
        return f"p{float(config['quantile']) * 100:g}"
    if kind == "ColumnCount" and config.get("column_type"):
        names = {"num": "numerical", "cat": "categorical", "datetime": "datetime", "text": "text"}
        ctype = str(config["column_type"])
        return f"{names.get(ctype, ctype)} columns"
    return label


def _plain(value: Any) -> Any:
    """Enums (Evidently's ColumnType, TestStatus) as their values."""
    return getattr(value, "value", value) if not isinstance(value, (int, float, str)) else value


def _format_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if "counts" in value and "shares" in value:
            return _categories(value["counts"], value["shares"])
        if set(value) == {"count", "share"}:
            return f"{_num(value['count'])} ({float(value['share']):.1%})"
        return _e(", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()))
    if isinstance(value, bool):
        return _yes_no(value)
    if isinstance(value, (int, float)):
        return _num(value)
    return _e("" if value is None else value)


def _categories(counts: Mapping[str, Any], shares: Mapping[str, Any]) -> str:
    ranked = sorted(counts, key=lambda k: -float(counts[k]))
    parts = []
    for key in ranked[:TOP_VALUES]:
        share = float(shares.get(key, 0.0))
        parts.append(
            f"<span class='bar' style='width:{max(2, round(share * 80))}px'></span>"
            f"{_e(key)}: {_num(counts[key])} ({share:.0%})"
        )
    rest = ranked[TOP_VALUES:]
    if rest:
        other = sum(float(counts[k]) for k in rest)
        parts.append(f"other ({len(rest)} values): {_num(other)}")
    return "<br>".join(parts)


def _is_drifted(method: str, score: Any, threshold: Any) -> bool | None:
    # Evidently's convention: p-values drift at or below the threshold, distances at or above
    try:
        score, threshold = float(score), float(threshold)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(score):
        return None
    return score <= threshold if "p_value" in method else score >= threshold


def _num(value: Any) -> str:
    if value is None:
        return ""
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.4g}"


def _yes_no(flag: bool | None) -> str:
    if flag is None:
        return ""
    return "<span class='bad'>yes</span>" if flag else "<span class='good'>no</span>"


def _status(status: str) -> str:
    good = status.upper() in ("SUCCESS", "PASS")
    return f"<span class='{'good' if good else 'bad'}'>{_e(status)}</span>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
