"""What evaluation costs the pipeline: evaluate() with 1000 bootstrap resamples against the
point metrics alone (bootstrap_samples=0), in the same process, for 1k and 10k test images x
100 classes. Also: the vectorised resample statistic against a per-resample sklearn loop (the
obvious alternative), and the HTML report with its four figures.

    python benchmarks/bench_evaluation.py [--repeats 3] [--classes 100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import f1_score

from rxvision.config import EvaluationConfig
from rxvision.evaluation import evaluate, render_html_report
from rxvision.evaluation.metrics import bootstrap_intervals


def synthetic_predictions(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs of a ~90%-accurate model (the demo's regime)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    logits = rng.normal(size=(n, num_classes)).astype(np.float64)
    logits[np.arange(n), labels] += 4.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), labels


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    classes = [f"c{i:03d}" for i in range(args.classes)]
    with_ci = EvaluationConfig(bootstrap_samples=args.resamples, seed=0)
    point_only = EvaluationConfig(bootstrap_samples=0)

    print(f"evaluate(): {args.classes} classes, {args.resamples} resamples, best of {args.repeats}")
    print(f"{'n':>7} {'point only s':>13} {'with CIs s':>11} {'ratio to point':>15}")
    for n in (1_000, 10_000):
        probs, labels = synthetic_predictions(n, args.classes, seed=n)
        t_point = best_of(
            lambda p=probs, y=labels: evaluate(p, y, classes, point_only), args.repeats
        )
        t_ci = best_of(lambda p=probs, y=labels: evaluate(p, y, classes, with_ci), args.repeats)
        print(f"{n:>7} {t_point:>13.3f} {t_ci:>11.3f} {t_ci / t_point:>14.1f}x")

    # reference for the hand-vectorised statistic: one sklearn f1_score call per resample
    n, k = 1_000, 100
    probs, labels = synthetic_predictions(n, args.classes, seed=1)
    preds = probs.argmax(axis=1)
    rng = np.random.default_rng(0)

    def sklearn_loop() -> None:
        for _ in range(k):
            idx = rng.integers(0, n, size=n)
            f1_score(labels[idx], preds[idx], average="macro", zero_division=0)

    t_loop = best_of(sklearn_loop, 1) * args.resamples / k
    t_vec = best_of(lambda: bootstrap_intervals(labels, preds, args.classes, with_ci), args.repeats)
    print(
        f"bootstrap of macro-F1, n=1000, {args.resamples} resamples: sklearn loop "
        f"{t_loop:.2f} s (extrapolated from {k}), vectorised scipy.stats.bootstrap (accuracy and "
        f"macro-F1 together) {t_vec:.3f} s: {t_loop / max(t_vec, 1e-9):.0f}x faster"
    )

    probs, labels = synthetic_predictions(1_000, args.classes, seed=2)
    res = evaluate(probs, labels, classes, with_ci)
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "lr": 1e-3} for e in range(1, 11)
    ]
    t_html = best_of(lambda: render_html_report(res, history, "bench", {}), 1)
    page = render_html_report(res, history, "bench", {})
    print(
        f"HTML report ({args.classes} classes, 4 figures): {t_html:.2f} s, {len(page) / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
