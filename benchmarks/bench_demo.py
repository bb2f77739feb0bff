"""Demo profile benchmark: train the demo model (synthetic pills, pretrained
tf_efficientnet_lite0 @128 on CPU) and report its test accuracy and training time.

    python benchmarks/bench_demo.py [--set key=value ...] [--run-dir DIR]
    python benchmarks/bench_demo.py --compare-precision [--rounds 2]

--compare-precision trains one epoch on 30 images per class instead, alternating the profile's
precision and memory format (training.precision=auto, channels_last) with the reference
fp32 + NCHW (precision 32, channels_last false), and prints wall and CPU seconds of each.

Reference in the same run: the accuracy of always predicting the largest training class, and
the goal (test accuracy >= 0.98, training <= 180 s on 2 cores)."""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from rxvision.telemetry import disable_telemetry

disable_telemetry()

import torch

from rxvision.config import load_config
from rxvision.data import (
    ImageDataset,
    build_eval_transform,
    build_loader,
    load_source,
    stratified_split,
)
from rxvision.evaluation import evaluate, predict
from rxvision.training import fit

GOAL_ACCURACY = 0.98
GOAL_TRAIN_S = 180.0


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (loader workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def compare_precision(overrides: list[str], rounds: int) -> None:
    """One-epoch fits, the profile's precision/memory format against fp32 + NCHW."""
    from rxvision.training.setup import resolve_precision

    base = [*overrides, "data.synthetic.images_per_class=30", "training.epochs=1"]
    variants = {
        "fp32, NCHW (reference)": ["training.precision=32", "training.channels_last=false"],
        "profile (precision auto, channels_last)": [],
    }
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in variants}
    for r in range(rounds):
        for name, sets in variants.items():
            cfg = load_config("demo", overrides=[*base, *sets])
            splits = stratified_split(load_source(cfg.data), cfg.data.split)
            t0, c0 = time.perf_counter(), cpu_seconds()
            result = fit(cfg, splits, Path(tempfile.mkdtemp(prefix="rxv-prec-")))
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            totals[name][0] += wall
            totals[name][1] += cpu
            print(
                f"round {r + 1} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, precision "
                f"{resolve_precision(cfg.training, 'cpu').name}, val_accuracy "
                f"{result.history[-1]['val_accuracy']:.3f}"
            )
    (ref_w, ref_c), (new_w, new_c) = totals.values()
    print(f"profile vs reference: {new_w / ref_w:.2f}x wall, {new_c / ref_c:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override key=value"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="training run folder (default: a temp dir)"
    )
    parser.add_argument("--compare-precision", action="store_true", help="see above")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.compare_precision:
        compare_precision(args.overrides, args.rounds)
        return

    cfg = load_config("demo", overrides=args.overrides)
    t0 = time.perf_counter()
    index = load_source(cfg.data)
    splits = stratified_split(index, cfg.data.split)
    data_s = time.perf_counter() - t0

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="rxv-demo-"))
    t1 = time.perf_counter()
    result = fit(cfg, splits, run_dir)
    train_s = time.perf_counter() - t1

    test_set = ImageDataset(
        splits.test, splits.label_map, build_eval_transform(result.normalization)
    )
    loader = build_loader(test_set, cfg.data.loader, train=False)
    t2 = time.perf_counter()
    preds = predict(result.model, loader, torch.device("cpu"))
    eval_s = time.perf_counter() - t2
    metrics = evaluate(preds.probs, preds.labels, splits.classes, cfg.evaluation).metrics

    majority = Counter(s.label for s in splits.train).most_common(1)[0][0]
    baseline = sum(s.label == majority for s in splits.test) / len(splits.test)
    acc = metrics["accuracy"]
    print("\n== demo profile benchmark ==")
    print(f"threads: {torch.get_num_threads()}  cores: {torch.multiprocessing.cpu_count()}")
    print(
        f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
        f"{len(splits.classes)} classes @ {cfg.data.image_size}px (source+split {data_s:.1f}s)"
    )
    print(f"model: {cfg.model.backbone} pretrained={cfg.model.pretrained} ({cfg.model.weights})")
    print(f"epochs run: {result.epochs_run} (stopped early: {result.stopped_early})")
    for row in result.history:
        print(
            f"  epoch {row['epoch']}: train_loss {row['train_loss']:.3f} "
            f"val_acc {row['val_accuracy']:.4f} "
            f"val_macro_f1 {row['val_macro_f1']:.4f} {row['images_per_s']:.1f} img/s "
            f"{row['epoch_time_s']:.1f}s"
        )
    hist_s = sum(row["epoch_time_s"] for row in result.history)
    print(f"epochs' time (history, all sessions of this run dir): {hist_s:.1f} s")
    print(
        f"training time: {train_s:.1f} s (goal <= {GOAL_TRAIN_S:.0f} s; "
        f"ratio to goal {train_s / GOAL_TRAIN_S:.2f})"
    )
    print(
        f"test accuracy: {acc:.4f} [{metrics.get('accuracy_ci_low', float('nan')):.4f}, "
        f"{metrics.get('accuracy_ci_high', float('nan')):.4f}]  "
        f"macro_f1 {metrics['macro_f1']:.4f}  ece {metrics['ece']:.4f}"
    )
    print(f"reference (majority class): {baseline:.4f}  -> ratio {acc / max(baseline, 1e-9):.1f}x")
    print(
        f"goal accuracy >= {GOAL_ACCURACY}: {'MET' if acc >= GOAL_ACCURACY else 'NOT MET'}; "
        f"test inference {len(splits.test) / eval_s:.0f} img/s"
    )


if __name__ == "__main__":
    main()
