"""Training-engine benchmarks, each against a reference measured in the same process.

(1) engine overhead: the fit loop's training throughput vs a bare PyTorch loop (same model,
    batch, in-memory data, threads, AdamW, label smoothing, clipping, lr schedule). Goal:
    engine / bare >= 0.95. Runs alternate (bare, engine, bare, engine, ...); the medians and
    the best runs are compared, because the CPU may be shared.
(2) data loader: the albumentations training pipeline over the demo's synthetic pills
    (DataLoader with the profile's workers) vs the model's consumption rate (train steps on
    in-memory tensors), img/s both.
(3) precision and memory format: the engine's epoch-2 training throughput with fp32 (the
    reference), fp32 + channels_last, bf16 and bf16 + channels_last (bf16 only where the CPU
    has native bf16), alternating, as ratios to fp32.
(4) BatchNorm when fine-tuning on small batches: the pretrained backbone fine-tuned on the
    demo's synthetic pills at batch 8 with BN statistics updated (the reference), frozen
    (training.freeze_bn_stats) or slowed (training.bn_momentum=0.01); val accuracy each.

    python benchmarks/bench_training.py [--model tf_efficientnet_lite0] [--image-size 128]
        [--batch-size 32] [--images 256] [--repeats 3] [--threads 2] [--skip-loader]
        [--skip-engine] [--skip-precision] [--skip-bn]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rxvision.telemetry import disable_telemetry

disable_telemetry()

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rxvision.config import RxVisionConfig, config_from_dict, load_config
from rxvision.models import build_model
from rxvision.training import build_optimizer, build_scheduler, fit_datasets


def _config(args: argparse.Namespace) -> RxVisionConfig:
    return config_from_dict(
        {
            "model": {"backbone": args.model, "pretrained": False, "dropout": 0.2},
            "data": {
                "image_size": args.image_size,
                "loader": {"batch_size": args.batch_size, "eval_batch_size": 64, "num_workers": 0},
            },
            "training": {
                "epochs": 2,
                "precision": "32",
                "accelerator": "cpu",
                "num_threads": args.threads,
                "early_stopping": {"enabled": False},
                "label_smoothing": 0.1,
                "grad_clip_norm": 1.0,
            },
        }
    )


def bare_loop(cfg: RxVisionConfig, data: TensorDataset, num_classes: int) -> float:
    """The reference: the plainest correct loop over the same pieces; img/s of epoch 2."""
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes)
    optimizer = build_optimizer(model, cfg.training)
    loader = DataLoader(data, batch_size=cfg.data.loader.batch_size, shuffle=True, drop_last=True)
    scheduler = build_scheduler(optimizer, cfg.training.scheduler, len(loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.training.label_smoothing)
    rate = 0.0
    for _epoch in range(2):
        model.train()
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            seen += len(y)
        rate = seen / (time.perf_counter() - start)
    return rate


def engine_loop(
    cfg: RxVisionConfig, data: TensorDataset, val: TensorDataset, num_classes: int
) -> float:
    """fit_datasets on the same data; its own epoch-2 training throughput (history images_per_s)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = fit_datasets(cfg, data, val, [str(i) for i in range(num_classes)], Path(tmp))
    return result.history[-1]["images_per_s"]


def bench_engine(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = _config(args)
    classes = 8
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(args.images, 3, args.image_size, args.image_size, generator=gen),
        torch.arange(args.images) % classes,
    )
    val = TensorDataset(data.tensors[0][:32], data.tensors[1][:32])
    bare, engine = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, data, classes))
        engine.append(engine_loop(cfg, data, val, classes))
    b, e = statistics.median(bare), statistics.median(engine)
    print(
        f"\n== (1) engine vs bare PyTorch loop: {args.model} @{args.image_size}px, "
        f"batch {args.batch_size}, "
        f"{args.images} in-memory images, {args.threads} threads, fp32 =="
    )
    print("bare   img/s: " + ", ".join(f"{v:.1f}" for v in bare) + f"  (median {b:.1f})")
    print("engine img/s: " + ", ".join(f"{v:.1f}" for v in engine) + f"  (median {e:.1f})")
    print(f"ratio engine/bare (medians): {e / b:.3f}  (goal >= 0.95)")
    # on a shared CPU the fastest run of each is the least disturbed one
    print(f"ratio engine/bare (best runs): {max(engine) / max(bare):.3f}")


def bench_loader(args: argparse.Namespace) -> None:
    from rxvision.data import (
        ImageDataset,
        LabelMap,
        build_loader,
        build_train_transform,
        load_source,
    )
    from rxvision.models import normalization_for

    cfg = load_config("demo", overrides=[f"data.loader.batch_size={args.batch_size}"])
    torch.set_num_threads(args.threads)
    index = load_source(cfg.data)
    norm = normalization_for(cfg.model, cfg.data.image_size)
    dataset = ImageDataset(
        index.samples, LabelMap(index.classes), build_train_transform(cfg.data, norm, seed=0)
    )
    loader = build_loader(dataset, cfg.data.loader, train=True, seed=0)
    batches = max(2, args.images // args.batch_size)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        x, _y = next(it)
        seen += len(x)
    loader_rate = seen / (time.perf_counter() - start)
    del it, loader

    model = build_model(
        cfg.model.model_copy(update={"pretrained": False}), len(index.classes)
    ).train()
    optimizer = build_optimizer(model, cfg.training)
    x = torch.randn(args.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
    y = torch.arange(args.batch_size) % len(index.classes)
    steps = max(2, min(6, batches))
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model_rate = steps * args.batch_size / (time.perf_counter() - start)
    print(
        f"\n== (2) data loader vs model: demo pills, albumentations train pipeline, "
        f"{cfg.data.loader.num_workers} workers, {cfg.model.backbone} @{cfg.data.image_size}px "
        f"train step =="
    )
    print(
        f"loader: {loader_rate:.1f} img/s   model consumes: {model_rate:.1f} img/s   "
        f"ratio loader/model: {loader_rate / model_rate:.2f} (>= 1: the model is the bottleneck)"
    )


def bench_precision(args: argparse.Namespace) -> None:
    from rxvision.training.cpu_bf16 import cpu_supports_bf16

    torch.set_num_threads(args.threads)
    classes = 8
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(args.images, 3, args.image_size, args.image_size, generator=gen),
        torch.arange(args.images) % classes,
    )
    val = TensorDataset(data.tensors[0][:32], data.tensors[1][:32])
    variants = [("fp32", "32", False), ("fp32 + channels_last", "32", True)]
    if cpu_supports_bf16():
        variants += [("bf16", "bf16", False), ("bf16 + channels_last", "bf16", True)]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    base = _config(args)
    for _ in range(args.repeats):
        for name, precision, channels_last in variants:
            cfg = base.model_copy(deep=True)
            cfg.training.precision = precision
            cfg.training.channels_last = channels_last
            rates[name].append(engine_loop(cfg, data, val, classes))
    ref = statistics.median(rates["fp32"])
    print(
        f"\n== (3) precision and memory format: {args.model} @{args.image_size}px, batch "
        f"{args.batch_size}, {args.threads} threads, engine epoch-2 train img/s "
        f"(CPU bf16: {'native' if cpu_supports_bf16() else 'none, bf16 rows skipped'}) =="
    )
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"{name:22s} "
            + ", ".join(f"{v:.1f}" for v in values)
            + f"  (median {med:.1f}, x{med / ref:.2f} of fp32)"
        )


def bench_bn(args: argparse.Namespace) -> None:
    from rxvision.data import load_source, stratified_split
    from rxvision.training import fit

    torch.set_num_threads(args.threads)
    size = min(args.image_size, 96)
    overrides = [
        "data.synthetic.images_per_class=40",
        f"data.image_size={size}",
        "data.loader.batch_size=8",
        "data.loader.num_workers=0",
        "data.loader.persistent_workers=false",
        "model.freeze_backbone=false",
        "training.epochs=2",
        f"training.num_threads={args.threads}",
        "training.early_stopping.enabled=false",
        "training.optimizer.lr=1e-3",
        "training.scheduler.name=cosine",
        "training.scheduler.warmup_epochs=1",
    ]
    variants = {
        "BN statistics updated": [],
        "freeze_bn_stats": ["training.freeze_bn_stats=true"],
        "bn_momentum=0.01": ["training.bn_momentum=0.01"],
    }
    print(
        f"\n== (4) BatchNorm, fine-tuning pretrained {load_config('demo').model.backbone} "
        f"@{size}px at batch 8 on the demo pills (12 classes x 40), 2 epochs =="
    )
    for name, extra in variants.items():
        cfg = load_config("demo", overrides=[*overrides, *extra])
        index = load_source(cfg.data)
        splits = stratified_split(index, cfg.data.split)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = fit(cfg, splits, Path(tmp))
        accs = ", ".join(f"{r['val_accuracy']:.3f}" for r in result.history)
        print(f"{name:24s} val accuracy by epoch: {accs}   ({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--skip-bn", action="store_true")
    args = parser.parse_args()
    if not args.skip_engine:
        bench_engine(args)
    if not args.skip_loader:
        bench_loader(args)
    if not args.skip_precision:
        bench_precision(args)
    if not args.skip_bn:
        bench_bn(args)


if __name__ == "__main__":
    main()
