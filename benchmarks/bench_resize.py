"""Downscaling real photos to the model's input: interpolation kernels against pixel-area
averaging (what ``Normalization.antialias`` switches), on the same photos in one process.

    python benchmarks/bench_resize.py [--sizes 64,96,128,160]

Photos: foolbox's 20 labelled ImageNet photos (512 px; ``pip install --no-deps foolbox``)
and scikit-image's sample photos. For each target side and method it prints:
- fidelity: PSNR against Pillow's antialiased Lanczos resize of the same photo (the
  reference a band-limited downscale should come close to);
- what a pretrained model sees: top-1 and the mean log-probability of the true ImageNet
  class of tf_efficientnet_lite0 (the offline weights package with its own 1000-class head),
  on the 20 ImageNet photos;
- the cost of one resize of a 12-megapixel (4000 x 3000) image, the upload a phone sends.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rxvision.models.weights import package_weights_file
from tests.support.photos import skimage_photos

METHODS = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,  # tf_efficientnet_lite0's pretrained_cfg interpolation
    "area (antialias)": cv2.INTER_AREA,
}


def imagenet_photos() -> list[tuple[np.ndarray, int]]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [
        (np.asarray(Image.open(p).convert("RGB")), int(p.stem.rsplit("_", 1)[1]))
        for p in sorted(folder.glob("imagenet_*.jpg"))
    ]


def imagenet_model() -> torch.nn.Module | None:
    """lite0 with the weights package's own ImageNet classifier (the product drops it)."""
    path = package_weights_file("tf_efficientnet_lite0")
    if path is None:
        return None
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    model.load_state_dict(
        {k: v.to(t.dtype) for (k, t), v in zip(target.items(), source.values(), strict=True)}
    )
    return model.eval()


def square(img: np.ndarray) -> np.ndarray:
    side = min(img.shape[:2])
    top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
    return img[top : top + side, left : left + side]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,96,128,160")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    labelled = imagenet_photos()
    photos = [square(p) for p in skimage_photos()] + [p for p, _ in labelled]
    photos = [p for p in photos if min(p.shape[:2]) >= 2 * max(sizes)]
    model = imagenet_model() if labelled else None
    print(
        f"{len(photos)} photos of at least {2 * max(sizes)} px "
        f"({len(labelled)} labelled ImageNet photos; model: {model is not None})"
    )
    torch.set_num_threads(2)
    for size in sizes:
        print(f"\n== {size} px ==")
        for name, interp in METHODS.items():
            ref = [
                np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.LANCZOS))
                for p in photos
            ]
            got = [cv2.resize(p, (size, size), interpolation=interp) for p in photos]
            fidelity = np.mean([psnr(a, b) for a, b in zip(got, ref)])
            line = f"  {name:<18} PSNR vs Lanczos {fidelity:5.1f} dB"
            if model is not None:
                batch = np.stack(
                    [cv2.resize(p, (size, size), interpolation=interp) for p, _ in labelled]
                )
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                with torch.inference_mode():
                    logp = torch.log_softmax(model(x), dim=1)
                labels = torch.tensor([label for _, label in labelled])
                top1 = int((logp.argmax(1) == labels).sum())
                true_logp = logp[torch.arange(len(labels)), labels].mean().item()
                line += f"  top-1 {top1}/{len(labels)}  mean log p(true) {true_logp:6.3f}"
            print(line, flush=True)
    big = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    print("\n== one resize of 4000 x 3000 px to a 128 px short side (median of 10) ==")
    base = None
    for name, interp in METHODS.items():
        times = []
        for _ in range(10):
            start = time.perf_counter()
            cv2.resize(big, (171, 128), interpolation=interp)
            times.append(time.perf_counter() - start)
        ms = float(np.median(times)) * 1e3
        base = base or ms
        print(f"  {name:<18} {ms:6.1f} ms ({ms / base:.2f}x bilinear)")


if __name__ == "__main__":
    main()
