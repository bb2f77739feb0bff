"""Pictures of an evaluation (PNG bytes) and one self-contained HTML report.

Figures are built with matplotlib's object API on the Agg canvas, never pyplot: no global
figure registry, no GUI backend, safe in steps and threads.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from rxvision.evaluation.metrics import CalibrationBins, EvaluationResult

_DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _label_fontsize(n: int) -> float:
    # readable at 12 classes, still legible (zoomed) at 100
    return float(np.clip(11 - n / 12, 4.5, 10))


def confusion_matrix_png(
    confusion: np.ndarray, classes: Sequence[str], normalize: bool = True
) -> bytes:
    """Row-normalised confusion matrix (each row: where that true class's images went)."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = len(classes)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {n} classes")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = float(np.clip(2.5 + 0.2 * n, 6, 24))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    # square-root colour scale: a 2% confusion is still visible next to a 98% diagonal
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    im = ax.imshow(cm, cmap="Blues", norm=norm, interpolation="nearest")
    fig.colorbar(
        im, ax=ax, fraction=0.046, pad=0.04, label="share of true class" if normalize else "count"
    )
    fs = float(min(10, 0.55 * 72 * side / n))  # about half a cell high, in points
    ax.set_xticks(range(n), labels=list(classes), rotation=90, fontsize=fs)
    ax.set_yticks(range(n), labels=list(classes), fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    if n <= 20:  # numbers in cells only while they fit
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    txt = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                    ax.text(
                        j,
                        i,
                        txt,
                        ha="center",
                        va="center",
                        fontsize=fs - 1,
                        color="white" if norm(cm[i, j]) > 0.6 else "black",
                    )
    return _png(fig)


def per_class_f1_png(per_class: Sequence[Mapping[str, Any]]) -> bytes:
    """Horizontal F1 bars, worst class on top, support in the label: where to look first."""
    rows = sorted(per_class, key=lambda r: (r["f1"], r["class"]), reverse=True)
    n = len(rows)
    fig = Figure(figsize=(8, float(np.clip(1.5 + 0.22 * n, 3, 26))))
    ax = fig.add_subplot()
    f1 = [r["f1"] for r in rows]
    labels = [f"{r['class']} (n={r['support']})" for r in rows]
    colors = ["#c0392b" if v < 0.8 else "#e67e22" if v < 0.95 else "#2e86c1" for v in f1]
    ax.barh(range(n), f1, color=colors)
    ax.set_yticks(range(n), labels=labels, fontsize=_label_fontsize(n))
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("F1")
    ax.set_title("Per-class F1 (red < 0.80 <= orange < 0.95 <= blue)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def reliability_diagram_png(calibration: CalibrationBins) -> bytes:
    """Accuracy vs confidence per bin against the diagonal, with the samples per bin below."""
    edges = np.asarray(calibration.edges)
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.array([np.nan if a is None else a for a in calibration.accuracy])
    conf = np.array([np.nan if c is None else c for c in calibration.confidence])
    fig = Figure(figsize=(6, 7))
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.bar(
        centers,
        np.nan_to_num(acc),
        width=width * 0.95,
        color="#2e86c1",
        edgecolor="#1b4f72",
        linewidth=0.5,
        label="accuracy",
    )
    gap_bottom = np.fmin(acc, conf)
    ax.bar(
        centers,
        np.nan_to_num(np.abs(conf - acc)),
        bottom=np.nan_to_num(gap_bottom),
        width=width * 0.95,
        facecolor="none",
        edgecolor="#c0392b",
        hatch="///",
        linewidth=0,
        label="gap to mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE = {calibration.ece:.4f})")
    ax.legend(loc="upper left", framealpha=0.9)
    ax_n.bar(centers, calibration.count, width=width * 0.95, color="gray")
    ax_n.set_xlabel("confidence (top-1 probability)")
    ax_n.set_ylabel("samples")
    return _png(fig)


_CURVES = (("loss", "Loss"), ("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"))


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(float(row.get("epoch", i + 1)))
            ys.append(float(v))
    return xs, ys


def training_curves_png(history: Sequence[Mapping[str, Any]]) -> bytes:
    """Loss, accuracy and macro-F1 per epoch (train vs val) and the learning rate.

    Reads keys `train_<m>` / `val_<m>` (a bare `<m>` counts as train) and `lr`; panels for
    metrics that were not recorded say so instead of failing.
    """
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).ravel()
    for ax, (metric, title) in zip(axes, _CURVES):
        drawn = False
        for split, style in (("train", "-o"), ("val", "-s")):
            xs, ys = _series(history, f"{split}_{metric}")
            if not xs and split == "train":
                xs, ys = _series(history, metric)
            if xs:
                ax.plot(xs, ys, style, markersize=3, label=split)
                drawn = True
        _finish(ax, title, drawn)
    ax = axes[3]
    xs, ys = _series(history, "lr")
    if not xs:
        xs, ys = _series(history, "learning_rate")
    if xs:
        ax.plot(xs, ys, "-o", markersize=3, color="#8e44ad")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _finish(ax, "Learning rate", bool(xs), legend=False)
    fig.suptitle("Training curves")
    fig.tight_layout()
    return _png(fig)


def _finish(ax: Any, title: str, drawn: bool, legend: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(
            0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray"
        )
    elif legend:
        ax.legend()


# ----------------------------------------------------------------------------- HTML report
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
     max-width:1200px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:150px}
.card .v{font-size:1.6em;font-weight:600} .card .ci{color:#666;font-size:.85em}
.bad{background:#fdecea} .muted{color:#777} img{max-width:100%;height:auto;border:1px solid #eee}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


class _Raw(str):
    """HTML that is already escaped (nested tables of the context section)."""


def _fmt(v: Any) -> str:
    if isinstance(v, _Raw):
        return v
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "n/a" if math.isnan(v) else f"{float(v):.4f}"
    return html.escape(str(v))


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], bad_rows: set[int] = frozenset()
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{_fmt(c)}</td>'
            if isinstance(c, (int, float, np.number)) and not isinstance(c, bool)
            else f"<td>{_fmt(c)}</td>"
            for c in row
        )
        body.append(f"<tr{' class=bad' if i in bad_rows else ''}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    level: float = 0.95,
) -> str:
    ci = ""
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        ci = f'<div class="ci">{level:.0%} CI {low:.4f} to {high:.4f}</div>'
    value_div = f'<div class="v">{_fmt(value)}</div>'
    return f'<div class="card"><div>{html.escape(name)}</div>{value_div}{ci}</div>'


def render_html_report(
    result: EvaluationResult,
    history: Sequence[Mapping[str, Any]] | None = None,
    title: str = "RxVision evaluation",
    extra: Mapping[str, Any] | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> str:
    """One self-contained HTML page (images inlined, no external links) for the dashboard.
    `sections` are (title, HTML) pairs shown after the worst confusions (see trust_sections)."""
    m = result.metrics
    level = result.confidence_level
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        (
            f"<p class='muted'>{m.get('n_samples', len(result.correct))} test images, "
            f"{len(result.classes)} classes; "
            f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}</p>"
        ),
    ]
    top_k_key = next((k for k in m if k.startswith("top") and k.endswith("_accuracy")), None)
    cards = [
        _card(
            "accuracy", m["accuracy"], m.get("accuracy_ci_low"), m.get("accuracy_ci_high"), level
        ),
        _card(
            "macro_f1", m["macro_f1"], m.get("macro_f1_ci_low"), m.get("macro_f1_ci_high"), level
        ),
    ]
    if top_k_key:
        cards.append(_card(top_k_key, m[top_k_key]))
    cards.append(_card("ece", m["ece"]))
    parts.append(f"<div class='cards'>{''.join(cards)}</div>")

    if extra:
        parts.append("<h2>Context</h2>")
        parts.append(
            _table(["item", "value"], [[str(k), _extra_value(v)] for k, v in extra.items()])
        )

    parts.append("<h2>Metrics</h2>")
    rows = []
    for key, value in m.items():
        if key.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
        if low is None or high is None:
            ci = ""
        elif math.isnan(low) or math.isnan(high):
            ci = "n/a (bootstrap off or too few samples)"
        else:
            ci = f"{low:.4f} to {high:.4f}"
        rows.append([key, value, ci])
    parts.append(_table(["metric", "value", f"bootstrap {level:.0%} CI"], rows))
    if result.absent_classes:
        parts.append(
            f"<p class='muted'>Classes with no test images (left out of macro averages): "
            f"{html.escape(', '.join(result.absent_classes))}</p>"
        )

    parts.append("<h2>Worst confusions</h2>")
    worst = result.worst_confusions(10)
    if worst:
        parts.append(
            _table(
                ["true class", "predicted as", "images", "share of true class"],
                [[w["true"], w["predicted"], w["count"], w["share_of_true"]] for w in worst],
            )
        )
    else:
        parts.append("<p>No misclassified test images.</p>")

    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(body)

    parts.append("<h2>Confusion matrix</h2>")
    parts.append(_img(confusion_matrix_png(result.confusion, result.classes), "confusion matrix"))
    parts.append("<h2>Per-class F1</h2>")
    parts.append(_img(per_class_f1_png(result.per_class), "per-class F1"))
    parts.append("<h2>Calibration</h2>")
    parts.append(_img(reliability_diagram_png(result.calibration), "reliability diagram"))
    if history:
        parts.append("<h2>Training curves</h2>")
        parts.append(_img(training_curves_png(history), "training curves"))

    parts.append("<h2>Per-class results</h2>")
    pc = sorted(result.per_class, key=lambda r: r["f1"])
    bad = {i for i, r in enumerate(pc) if r["support"] > 0 and r["f1"] < 0.8}
    parts.append(
        _table(
            ["class", "precision", "recall", "f1", "support"],
            [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in pc],
            bad,
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _extra_value(v: Any, depth: int = 0) -> Any:
    """Context values as HTML: mappings and lists of records become small nested tables."""
    if depth > 3:
        return str(v)
    if isinstance(v, Mapping):
        rows = [[str(k), _extra_value(x, depth + 1)] for k, x in v.items()]
        return _Raw(_table(["key", "value"], rows))
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
        header = list(dict.fromkeys(k for x in v for k in x))
        rows = [[_extra_value(x.get(k), depth + 1) for k in header] for x in v]
        return _Raw(_table([str(h) for h in header], rows))
    if isinstance(v, (list, tuple)):
        return "; ".join(str(x) for x in v)
    return v


def trust_sections(
    metrics: Mapping[str, float],
    calibration: Mapping[str, Any],
    invariance: Sequence[Mapping[str, Any]],
    class_accuracy: Sequence[Mapping[str, Any]],
    gallery_png: bytes | None,
    gallery: Sequence[Mapping[str, Any]],
    class_floor: float | None = None,
) -> list[tuple[str, str]]:
    """Report sections: prediction sets and abstention, invariance, per-class accuracy (rows
    under `class_floor` marked) and the gallery of the worst mistakes with their maps."""
    out = []
    m = metrics

    def ci(key: str) -> str:
        low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
        if low is None or high is None or math.isnan(low) or math.isnan(high):
            return "n/a"
        return f"{low:.4f} to {high:.4f}"

    rows = [
        ["coverage (true label in the set)", m.get("coverage", math.nan), ci("coverage")],
        ["target coverage", m.get("coverage_target", math.nan), ""],
        ["mean set size", m.get("mean_set_size", math.nan), ci("mean_set_size")],
        ["single-label sets", m.get("singleton_rate", math.nan), ""],
        ["uncertain answers", m.get("uncertain_rate", math.nan), ""],
        ["unknown answers (in-distribution)", m.get("unknown_rate", math.nan), ""],
        ["temperature", calibration.get("temperature", math.nan), ""],
        [
            "ece before / after temperature",
            _Raw(f"{_fmt(m.get('ece_uncalibrated', math.nan))} / {_fmt(m.get('ece', math.nan))}"),
            "",
        ],
    ]
    note = (
        f"<p class='muted'>Calibration {html.escape(str(calibration.get('version', '')))} "
        f"fitted on {calibration.get('n_calibration', 0)} validation images. Every answer "
        f"carries its label set; it is uncertain when the set has more than one label or the "
        f"top-1 probability is under {_fmt(calibration.get('confidence_threshold'))}, unknown "
        f"when its OOD score (energy) is above {_fmt(calibration.get('ood_threshold'))}.</p>"
    )
    out.append(
        (
            "Prediction sets and abstention",
            _table(["measure", "test split", "bootstrap CI"], rows) + note,
        )
    )
    if invariance:
        out.append(
            (
                "Invariance",
                _table(
                    ["transform", "label changed", "invariance", "images"],
                    [
                        [r["transform"], r["label_changed"], r["invariance"], r["images"]]
                        for r in invariance
                    ],
                ),
            )
        )
    if class_accuracy:
        bad = (
            {i for i, r in enumerate(class_accuracy) if r["accuracy"] < class_floor}
            if class_floor is not None
            else set()
        )
        out.append(
            (
                "Per-class accuracy",
                _table(
                    ["class", "accuracy", "test images"],
                    [[r["class"], r["accuracy"], r["support"]] for r in class_accuracy],
                    bad,
                ),
            )
        )
    if gallery_png is not None:
        table = _table(
            ["image", "true", "predicted", "confidence"],
            [[g["image"], g["true"], g["predicted"], g["confidence"]] for g in gallery],
        )
        out.append(("Worst mistakes", table + _img(gallery_png, "worst mistakes with maps")))
    else:
        out.append(("Worst mistakes", "<p>No misclassified test images.</p>"))
    return out
