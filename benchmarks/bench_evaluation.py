"""What evaluation costs the pipeline: evaluate() with 1000 bootstrap resamples against the
point metrics alone (bootstrap_samples=0), in the same process, for 1k and 10k test images x
100 classes. Also: the vectorised resample statistic against a per-resample sklearn loop (the
obvious alternative), and the HTML report with its four figures.

    python benchmarks/bench_evaluation.py [--repeats 3] [--classes 100]
    python benchmarks/bench_evaluation.py --model-passes [--repeats 2]

--model-passes measures the model side of the demo's evaluation step instead, each variant
next to its reference in the same process: the frozen demo backbone (tf_efficientnet_lite0
@128, 2 threads) on NCHW against NHWC (channels_last) batches, and the invariance tests as
one loader pass per transform (the reference) against one pass with every view of an image
(`predict_invariance`), which must give the same labels.
"""

from __future__ import annotations

import argparse
import resource
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


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (loader workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall s, CPU s) of one call."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def model_passes(repeats: int) -> None:
    """NCHW vs NHWC forward, and 4 invariance loader passes vs one, on the demo's data."""
    import torch

    from rxvision.config import load_config
    from rxvision.data.sources import load_source
    from rxvision.data.split import stratified_split
    from rxvision.evaluation.model_eval import predict_invariance, predict_samples
    from rxvision.evaluation.trust import INVARIANCE_TRANSFORMS
    from rxvision.models.build import build_model, normalization_for

    torch.set_num_threads(2)
    cfg = load_config("demo")
    splits = stratified_split(load_source(cfg.data), cfg.data.split)
    classes, test = list(splits.classes), list(splits.test)
    model = build_model(cfg.model, len(classes)).eval()  # the frozen pretrained backbone
    norm = normalization_for(cfg.model, cfg.data.image_size)
    x = torch.randn(cfg.data.loader.eval_batch_size, 3, norm.image_size, norm.image_size)
    layouts = {"NCHW": x, "NHWC (channels_last)": x.contiguous(memory_format=torch.channels_last)}
    print(f"forward, {x.shape[0]} x {norm.image_size}px, {cfg.model.backbone}, 2 threads, fp32")
    with torch.inference_mode():
        outs = {name: model(t) for name, t in layouts.items()}  # warm-up, and the outputs
        diff = float((outs["NCHW"] - outs["NHWC (channels_last)"]).abs().max())
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
        for _ in range(repeats):
            for name, t in layouts.items():
                _, wall, cpu = timed(lambda t=t: [model(t) for _ in range(3)])
                rows[name].append((3 * x.shape[0] / wall, cpu * 1000 / (3 * x.shape[0])))
    ref = min(c for _, c in rows["NCHW"])
    for name, vals in rows.items():
        best = min(c for _, c in vals)
        rates = ", ".join(f"{r:.0f}" for r, _ in vals)
        print(f"  {name:22s} img/s {rates}; CPU ms/img {best:.1f} ({ref / best:.2f}x vs NCHW)")
    print(f"  max |logit difference| {diff:.2e}")

    names = list(cfg.evaluation.invariance)
    print(f"invariance tests on the {len(test)} test images: {', '.join(names)}")
    for r in range(repeats):
        per, w_ref, c_ref = timed(
            lambda: {
                n: predict_samples(
                    model, test, classes, norm, cfg, device="cpu", pre=INVARIANCE_TRANSFORMS[n]
                ).logits.argmax(1)
                for n in names
            }
        )
        one, w_new, c_new = timed(
            lambda: predict_invariance(model, test, classes, norm, cfg, names, device="cpu")
        )
        same = all((per[n] == one[n]).all() for n in names)  # type: ignore[index]
        print(
            f"  round {r + 1}: one pass per transform {w_ref:.1f} s wall / {c_ref:.1f} s CPU; "
            f"one pass for all {w_new:.1f} s / {c_new:.1f} s ({c_ref / c_new:.2f}x less CPU, "
            f"{w_ref / w_new:.2f}x less wall); same labels: {same}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--model-passes", action="store_true", help="the model side (see above)")
    args = ap.parse_args()
    if args.model_passes:
        model_passes(args.repeats)
        return
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
