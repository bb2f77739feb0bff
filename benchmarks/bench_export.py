"""ONNX Runtime against PyTorch eager (and TorchScript, int8) for one model, in one run.

    python benchmarks/bench_export.py [--backbone tf_efficientnet_lite0] [--size 128] \\
        [--iterations 30]

Random weights are fine: speed does not depend on them. Prints p50/p95/p99 per batch and
format, and the ratio of each format's throughput to PyTorch eager measured in this run.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch

from rxvision.config import ModelConfig
from rxvision.export import (
    OnnxRunner,
    TorchRunner,
    export_onnx,
    export_torchscript,
    load_torchscript,
    profile_latency,
    quantize_int8,
)
from rxvision.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch and ORT intra-op threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(backbone=args.backbone, pretrained=False), num_classes=12, load_weights=False
    ).eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "m.onnx", args.size)
        ts_path = export_torchscript(model, Path(tmp) / "m.pt", args.size)
        runners = [
            TorchRunner(model, name="torch_eager"),
            OnnxRunner(onnx_path, threads=args.threads, name="onnxruntime"),
            TorchRunner(load_torchscript(ts_path), name="torchscript"),
            TorchRunner(quantize_int8(model), name="torch_int8_dynamic"),
        ]
        stats = [
            s
            for r in runners
            for s in profile_latency(r, args.size, args.batch_sizes, args.iterations, warmup=3)
        ]
    base = {s.batch_size: s.throughput_ips for s in stats if s.format == "torch_eager"}
    print(
        f"{args.backbone} @{args.size}px, threads={args.threads or torch.get_num_threads()}, "
        f"{args.iterations} iterations"
    )
    print(
        f"{'format':<20}{'batch':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'img/s':>10}{'x eager':>9}"
    )
    rows = []
    for s in stats:
        ratio = s.throughput_ips / base[s.batch_size]
        rows.append({**s.to_dict(), "ratio_vs_torch_eager": ratio})
        print(
            f"{s.format:<20}{s.batch_size:>6}{s.p50_ms:>10.1f}{s.p95_ms:>10.1f}{s.p99_ms:>10.1f}{s.throughput_ips:>10.1f}{ratio:>8.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
