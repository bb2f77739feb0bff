"""A model card per model version as one static HTML page (no scripts, so the ZenML
dashboard, which renders HTML with scripts disabled, shows it): stage history, test metrics
with their intervals, the gate's rules, dataset and test fingerprints, and the lineage from
data to registry as a drawn chain."""

from __future__ import annotations

import html
from typing import Any

from rxvision.evaluation.metrics import top_k_keys

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;color:#1d2630;margin:1rem}
h1{font-size:1.3rem;margin:0 0 .3rem} h2{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse}
td,th{padding:.2rem .8rem .2rem 0;text-align:left;vertical-align:top}
th{color:#5b6670;font-weight:600} .pass{color:#1b7a35} .fail{color:#a11b1b} .na{color:#5b6670}
.chain{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem}
.node{border:1px solid #9aa7b2;border-radius:.4rem;padding:.3rem .6rem;background:#f4f7f9}
.arrow{color:#5b6670} code{font-size:.85rem}
"""
# shown first, in this order; then the top-k accuracy the evaluation measured (top{k}_accuracy)
HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "ece")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _metric_rows(metrics: dict[str, Any], num_classes: int | None) -> str:
    rows = []
    top_k = top_k_keys(metrics)
    for name in (*HEADLINE, *top_k):
        if name not in metrics or metrics[name] is None:
            continue
        if name in top_k and num_classes is not None and num_classes <= top_k[name]:
            continue  # top-k of k classes or fewer says nothing
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        interval = (
            f"{float(low):.3f} to {float(high):.3f}" if low is not None and high is not None else ""
        )
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{float(metrics[name]):.4f}</td><td>{interval}</td></tr>"
        )
    return "".join(rows)


def render_model_card(
    *,
    model: str,
    version: str,
    stage: str | None,
    metrics: dict[str, Any],
    gate_rules: list[dict[str, Any]],
    stage_history: list[dict[str, Any]],
    dataset_fingerprint: str,
    test_fingerprint: str,
    lineage: dict[str, Any],
    classes: list[str] | None = None,
    backbone: str | None = None,
) -> str:
    """The card's HTML (self-contained, script-free)."""
    n = len(classes) if classes else None
    rules = "".join(
        f"<tr><td class='{ {True: 'pass', False: 'fail'}.get(r.get('passed'), 'na') }'>"
        f"{ {True: 'pass', False: 'FAIL'}.get(r.get('passed'), 'n/a') }</td>"
        f"<td>{_e(r.get('rule'))}</td><td>{_e(r.get('message'))}</td></tr>"
        for r in gate_rules
    )
    history = "".join(
        f"<tr><td>{_e(h.get('at', ''))}</td>"
        f"<td>{_e(h.get('from', ''))} &rarr; {_e(h.get('to', ''))}</td>"
        f"<td>{_e(h.get('by', ''))}</td>"
        f"<td>{'forced: ' + _e(h.get('reason', '')) if h.get('forced') else ''}"
        f"</td></tr>"
        for h in stage_history
    )
    chain = [
        ("dataset", dataset_fingerprint[:12]),
        ("test split", test_fingerprint[:12]),
        ("training run", lineage.get("pipeline_run", "?")),
        ("git", str(lineage.get("git_commit", "?"))[:12]),
        (f"{model} v{version}", stage or "no stage"),
    ]
    if lineage.get("mlflow_version"):
        chain.append(("MLflow", f"version {lineage['mlflow_version']}"))
    nodes = "<span class='arrow'>&rarr;</span>".join(
        f"<span class='node'><b>{_e(a)}</b><br><code>{_e(b)}</code></span>" for a, b in chain
    )
    about = ", ".join(x for x in (backbone and f"backbone {backbone}", n and f"{n} classes") if x)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(model)} version {_e(version)}: {_e(stage or 'no stage')}</h1>"
        f"<p>{_e(about)}</p>"
        f"<h2>Test metrics (95% intervals where computed)</h2><table><tr><th>metric</th>"
        f"<th>value</th><th>interval</th></tr>{_metric_rows(metrics, n)}</table>"
        f"<h2>Quality gate</h2><table>{rules}</table>"
        f"<h2>Stage history</h2><table><tr><th>when (UTC)</th><th>change</th><th>by</th><th></th>"
        f"</tr>{history}</table>"
        f"<h2>Lineage</h2><div class='chain'>{nodes}</div>"
        f"<p>dataset <code>{_e(dataset_fingerprint)}</code><br>test split "
        f"<code>{_e(test_fingerprint)}</code></p></body></html>"
    )
