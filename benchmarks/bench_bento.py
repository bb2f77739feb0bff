"""Figures for the lean Bento: installed size of the CPU image's Python packages with our
pinned requirements (bentos/requirements-cpu.txt: no torch) against the previous package list
(torch, timm, albumentations, scikit-learn, ...: the reference), measured in this process
from the installed files of the project's environment, plus the built Bento's own size.

    python benchmarks/bench_bento.py [--bento PATH]

The sizes are what `pip install` puts into site-packages for these distributions on this
platform (Linux x86_64, CPython 3.11): the part of the image the requirements decide.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bentos.requirements import SERVING_DISTRIBUTIONS, closure

# the bentofile's package list before the pinned CPU requirements (the reference)
PREVIOUS = (
    "torch",
    "timm",
    "onnx",
    "onnxruntime",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "albumentations",
    "pydantic",
    "pyyaml",
    "pandas",
    "scikit-learn",
    "python-json-logger",
    "bentoml",
)


def installed_bytes(names: list[str]) -> int:
    total = 0
    for name in names:
        dist = md.distribution(name)
        for f in dist.files or []:
            path = Path(dist.locate_file(f))
            if path.is_file():
                total += path.stat().st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bento", type=Path, help="a built Bento folder to size as well")
    args = parser.parse_args()
    lean = list(closure(SERVING_DISTRIBUTIONS))
    reference = list(closure(PREVIOUS, exclude=frozenset()))  # torch pulls NVIDIA's CUDA wheels
    lean_b, ref_b = installed_bytes(lean), installed_bytes(reference)
    print(
        f"reference (previous list, with torch): {len(reference)} packages, "
        f"{ref_b / 2**20:,.0f} MiB"
    )
    print(f"pinned CPU requirements (no torch):    {len(lean)} packages, {lean_b / 2**20:,.0f} MiB")
    print(f"ratio lean / reference: {lean_b / ref_b:.3f}  ({ref_b / lean_b:.1f}x smaller)")
    heavy = sorted(((installed_bytes([n]), n) for n in set(reference) - set(lean)), reverse=True)[
        :5
    ]
    print("largest dropped:", ", ".join(f"{n} {b / 2**20:,.0f} MiB" for b, n in heavy))
    if args.bento:
        size = sum(p.stat().st_size for p in args.bento.rglob("*") if p.is_file())
        print(f"bento folder {args.bento}: {size / 2**20:,.1f} MiB (model + sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
