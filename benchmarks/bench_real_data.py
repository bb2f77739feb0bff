"""Real photos: the product's default run against a bare fine-tuning script, same split, same
machine, one process.

    python benchmarks/bench_real_data.py [--per-class 800] [--ratio 1] [--variant NAME=k=v,k=v]

Data: two classes of Fashion-MNIST (real photos of clothes, Zalando; Debian package
dataset-fashion-mnist, installs offline), written out as an ImageFolder of 64 px PNGs
(bicubic from 28 px, so the folder passes the default min_resolution); ``--ratio 6`` keeps
1/6 of the second class (an imbalanced variant). The product run is what a user gets from
``run.py --pipeline training --set data.source=imagefolder --set data.path=DIR``: the demo
profile with its real-data recipe, through the library (load, validate, split, fit, evaluate).
The reference is benchmarks/reference_finetune.py on the same train split (it uses no val
split), scored on the same test split. ``--variant`` adds product runs with overrides
(ablations). Prints accuracy and macro-F1 with bootstrap intervals, wall time, the
majority-class baseline, and the machine's load (other jobs share the cores).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from rxvision.telemetry import disable_telemetry

disable_telemetry()

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_finetune import train_and_predict

from rxvision.config import EvaluationConfig, load_config
from rxvision.data import (
    ImageDataset,
    apply_policy,
    build_eval_transform,
    build_loader,
    load_source,
    stratified_split,
    validate_dataset,
)
from rxvision.errors import RxVisionError
from rxvision.evaluation import evaluate, predict
from rxvision.registry import majority_baseline
from rxvision.training import fit

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=offset)


def write_imagefolder(
    out: Path, classes: list[str], per_class: int, ratio: float, side: int, seed: int = 0
) -> dict[str, int]:
    """``per_class`` images of each class (the last class / ratio) from the training file."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        raise RxVisionError(
            f"Fashion-MNIST not found in {FASHION_DIR}", "apt-get install dataset-fashion-mnist"
        )
    images = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(seed)
    counts = {}
    for k, name in enumerate(classes):
        n = per_class if k < len(classes) - 1 else max(5, round(per_class / ratio))
        rows = rng.choice(np.flatnonzero(labels == FASHION_CLASSES.index(name)), n, replace=False)
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in rows:
            Image.fromarray(images[i]).resize((side, side), Image.BICUBIC).save(
                out / name / f"{i}.png"
            )
        counts[name] = n
    return counts


def _row(name: str, metrics: dict, seconds: float) -> str:
    return (
        f"{name:<28} acc {metrics['accuracy']:.4f} [{metrics['accuracy_ci_low']:.4f}, "
        f"{metrics['accuracy_ci_high']:.4f}]  macro_f1 {metrics['macro_f1']:.4f} "
        f"[{metrics['macro_f1_ci_low']:.4f}, {metrics['macro_f1_ci_high']:.4f}]  {seconds:6.0f} s"
    )


def product_run(data_dir: Path, work: Path, overrides: list[str], splits=None):
    """The default run through the library; returns (metrics, wall s, splits, config)."""
    cfg = load_config(
        "demo",
        overrides=[
            "data.source=imagefolder",
            f"data.path={data_dir}",
            f"data.cache_dir={work / 'cache'}",
            *overrides,
        ],
    )
    start = time.perf_counter()
    index = load_source(cfg.data)
    index = apply_policy(index, validate_dataset(index, cfg.data.validation), cfg.data.validation)
    splits = splits or stratified_split(index, cfg.data.split)
    result = fit(cfg, splits, work / f"run-{len(list(work.glob('run-*')))}")
    test = ImageDataset(splits.test, splits.label_map, build_eval_transform(result.normalization))
    preds = predict(
        result.model, build_loader(test, cfg.data.loader, train=False), torch.device("cpu")
    )
    seconds = time.perf_counter() - start
    return (
        evaluate(preds.probs, preds.labels, splits.classes, cfg.evaluation).metrics,
        seconds,
        splits,
        cfg,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--classes", default="tshirt_top,shirt", help="two or more Fashion-MNIST classes"
    )
    parser.add_argument("--per-class", type=int, default=800)
    parser.add_argument("--ratio", type=float, default=1.0, help="largest / smallest class")
    parser.add_argument("--side", type=int, default=64, help="side of the written PNGs")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="override for the product's default run (and its variants)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=key=value,key=value: one more product run with these overrides",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for every run (default: torch's); on a machine other "
        "jobs oversubscribe, 1 thread can be several times faster than 2",
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--reference-fp32", action="store_true", help="reference without bf16")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if args.threads:
        torch.set_num_threads(args.threads)
        args.overrides = [f"training.num_threads={args.threads}", *args.overrides]
    work = Path(tempfile.mkdtemp(prefix="rxv-real-"))
    classes = args.classes.split(",")
    counts = write_imagefolder(work / "photos", classes, args.per_class, args.ratio, args.side)
    load0 = os.getloadavg()
    print(f"data: Fashion-MNIST {counts} as {args.side}px PNGs in {work / 'photos'}")
    print(
        f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average at start {load0[0]:.2f}"
    )

    rows = []
    metrics, seconds, splits, cfg = product_run(work / "photos", work, args.overrides)
    rows.append(_row("product default", metrics, seconds))
    print(rows[-1], flush=True)
    print(
        f"  recipe {cfg.recipe}: {cfg.model.backbone} @{cfg.data.image_size}px, "
        f"{cfg.training.epochs} epochs, precision {cfg.training.precision}, "
        f"augmentation {cfg.data.augmentation.preset}, split {len(splits.train)}/"
        f"{len(splits.val)}/{len(splits.test)}"
    )
    eval_cfg = EvaluationConfig(bootstrap_samples=cfg.evaluation.bootstrap_samples)
    if not args.no_reference:
        label_of = splits.label_map
        items = lambda samples: [(s.path, label_of.index(s.label)) for s in samples]
        start = time.perf_counter()
        probs, _train_s = train_and_predict(
            items(splits.train),
            items(splits.test),
            len(splits.classes),
            size=cfg.data.image_size,
            epochs=cfg.training.epochs,
            bf16=not args.reference_fp32,
        )
        labels = np.array([label_of.index(s.label) for s in splits.test])
        ref = evaluate(probs, labels, splits.classes, eval_cfg).metrics
        rows.append(_row("reference script", ref, time.perf_counter() - start))
        print(rows[-1], flush=True)
    for spec in args.variant:
        name, _, sets = spec.partition("=")
        extra = [s for s in sets.split(",") if s]
        m, s, _, _ = product_run(work / "photos", work, [*args.overrides, *extra], splits=splits)
        rows.append(_row(f"product {name}", m, s))
        print(rows[-1], flush=True)

    support = [sum(s.label == c for s in splits.test) for c in splits.classes]
    base = majority_baseline(support)
    print(
        "\n== real-data benchmark (test split: "
        f"{len(splits.test)} images, {dict(zip(splits.classes, support))}) =="
    )
    print("\n".join(rows))
    print(f"{'majority class':<28} acc {base['accuracy']:.4f}  macro_f1 {base['macro_f1']:.4f}")
    print(
        f"load average at end {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min); "
        "times are end to end (the product's includes data validation and its val passes)"
    )


if __name__ == "__main__":
    main()
