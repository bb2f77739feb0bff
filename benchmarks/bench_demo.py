"""Demo profile benchmark: train the demo model (synthetic pills, pretrained
tf_efficientnet_lite0 @128 on CPU) and report its test accuracy and training time.

    python benchmarks/bench_demo.py [--set key=value ...] [--run-dir DIR]

Reference in the same run: the accuracy of always predicting the largest training class, and
the goal (test accuracy >= 0.98, training <= 180 s on 2 cores)."""

from __future__ import annotations

import argparse
import logging
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
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

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
