"""Trustworthy answers, measured: coverage and size of the conformal label sets, uncertain and
unknown answers, and what applying the calibration costs per answer.

1. cost: rxvision.calibration.apply_calibration on a batch of logits against the softmax +
   top-k the service computes today (same process, same logits).
2. real images: scikit-learn's handwritten digits (1797 real 8x8 scans), a logistic
   regression's logits; calibration on a third, coverage and set size on the rest.
3. --demo: the demo profile's synthetic pills, trained with the library (fit), evaluated with
   rxvision.evaluation.model_eval (val = calibration split, test scored), plus the OOD check on
   real non-pill photos (scikit-image's sample images; foolbox's ImageNet photos when foolbox
   is installed with `pip install --no-deps foolbox`).

    python benchmarks/bench_trust.py [--demo] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support

from rxvision.calibration import apply_calibration, calibrate, softmax
from rxvision.calibration.fit import fit_calibration
from rxvision.config import EvaluationConfig
from rxvision.evaluation.trust import set_metrics


def _ci(m: dict[str, float], key: str) -> str:
    return f"{m[key]:.3f} [{m[key + '_ci_low']:.3f}-{m[key + '_ci_high']:.3f}]"


def cost(repeats: int = 200) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(32, 12)) * 4
    labels = rng.integers(0, 12, 32)
    cal = fit_calibration(logits, labels, 0.9, 0.5, 0.01)

    def plain() -> None:
        p = softmax(logits)
        top = np.argsort(-p, axis=1)[:, :3]
        [[(int(i), float(p[r, i])) for i in top[r]] for r in range(len(p))]

    def calibrated() -> None:
        apply_calibration(logits, cal, classes=[f"c{i}" for i in range(12)])

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_plain, t_cal = best(plain), best(calibrated)
    print(
        f"per answer (batch of 32 x 12 classes): softmax + top-3 {t_plain / 32 * 1e6:.1f} us, "
        f"apply_calibration {t_cal / 32 * 1e6:.1f} us (+{(t_cal - t_plain) / 32 * 1e6:.1f} us)"
    )


def digits(coverage: float) -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    tr, ca, te = order[:600], order[600:1000], order[1000:]
    model = LogisticRegression(max_iter=5000).fit(x[tr] / 16, y[tr])
    cal = fit_calibration(model.decision_function(x[ca] / 16), y[ca], coverage, 0.5, 0.01)
    out = calibrate(model.decision_function(x[te] / 16), cal)
    m = set_metrics(out, y[te], coverage, EvaluationConfig())
    acc = float((out.top1 == y[te]).mean())
    print(
        f"digits (real, {len(te)} test images, accuracy {acc:.3f}, T={cal.temperature:.2f}): "
        f"coverage {_ci(m, 'coverage')} at target {coverage}, mean set size "
        f"{_ci(m, 'mean_set_size')}, uncertain {m['uncertain_rate']:.3f}, unknown "
        f"{m['unknown_rate']:.3f}"
    )


def photos() -> list[np.ndarray]:
    """Real photos that are not pills: scikit-image's samples, foolbox's ImageNet images."""
    from PIL import Image

    from tests.support.photos import skimage_photos

    out = skimage_photos()
    spec = importlib.util.find_spec("foolbox")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
        for path in sorted(folder.glob("imagenet_*.jpg")):
            out.append(np.asarray(Image.open(path).convert("RGB")))
    return out


def demo(overrides: list[str]) -> None:

    from rxvision.config import load_config
    from rxvision.data.sources import load_source
    from rxvision.data.split import stratified_split
    from rxvision.evaluation.model_eval import evaluate_trained_bundle, resolve_device
    from rxvision.models.bundle import save_bundle
    from rxvision.training import fit

    cfg = load_config("demo", overrides=overrides)
    work = Path(tempfile.mkdtemp(prefix="rxvision-trust-"))
    splits = stratified_split(load_source(cfg.data), cfg.data.split)
    t0 = time.perf_counter()
    result = fit(cfg, splits, work / "run")
    save_bundle(work / "trained", result.model, list(splits.classes), result.normalization, cfg)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_trained_bundle(work / "trained", splits.val, splits.test, cfg, work / "final")
    t_eval = time.perf_counter() - t0
    m, cal = ev.metrics, ev.calibration
    print(
        f"demo ({len(splits.val)} calibration / {len(splits.test)} test images, fit {t_fit:.0f} s"
        f", evaluation {t_eval:.1f} s on {resolve_device(cfg.evaluation.device)}): accuracy "
        f"{m['accuracy']:.3f}, T={cal.temperature:.2f}, ece {m['ece_uncalibrated']:.3f} -> "
        f"{m['ece']:.3f}"
    )
    print(
        f"  coverage {_ci(m, 'coverage')} at target {cfg.evaluation.coverage}, mean set size "
        f"{_ci(m, 'mean_set_size')}, uncertain {m['uncertain_rate']:.3f}, unknown (pills) "
        f"{m['unknown_rate']:.3f}"
    )
    print(
        "  invariance: "
        + ", ".join(f"{r['transform']} {r['invariance']:.3f}" for r in ev.invariance)
    )
    ood(ev.bundle_dir)


def ood(bundle_dir: Path) -> None:
    """The real non-pill photos through a calibrated bundle: how many come out unknown."""
    import torch

    from rxvision.data.transforms import preprocess_image
    from rxvision.models.bundle import load_bundle

    loaded = load_bundle(bundle_dir)
    cal = loaded.info.calibration_obj()
    norm = loaded.info.normalization_obj()
    images = photos()
    x = torch.from_numpy(np.stack([preprocess_image(i, norm) for i in images]))
    with torch.no_grad():
        logits = loaded.model(x).numpy()
    out = calibrate(logits, cal)
    print(
        f"  OOD: {int(out.unknown.sum())}/{len(images)} real non-pill photos answered unknown, "
        f"{int(out.uncertain.sum())}/{len(images)} uncertain (threshold {cal.ood_threshold:.2f},"
        f" unknown_rate {cal.unknown_rate})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true", help="also train and evaluate the demo")
    ap.add_argument("--coverage", type=float, default=0.95)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--bundle", type=Path, help="only the OOD check of this calibrated bundle")
    args = ap.parse_args()
    if args.bundle:
        ood(args.bundle)
        return
    cost()
    digits(args.coverage)
    if args.demo:
        demo(args.overrides)


if __name__ == "__main__":
    main()
