"""Pipeline overhead and demo wall time.

Measures, in one process and on the same config:
  1. reference: the library alone (load, validate, split, fit, evaluate) - no ZenML;
  2. the ZenML training pipeline on a fresh local stack (a clean RXVISION_HOME: data generated,
     ZenML store created, nothing cached);
  3. the same pipeline again on that now-warm state (data cached, cached data steps);
and prints the seconds and the ratios pipeline / library.

    python benchmarks/bench_pipeline.py                       # demo profile (minutes)
    python benchmarks/bench_pipeline.py --tiny                # the integration tests' tiny config
    python benchmarks/bench_pipeline.py --set training.epochs=2

The library reference runs first, on its own data cache, so the pipeline's clean run still
has to generate the synthetic data (as a user's first run does).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def library_only(cfg: Any, run_dir: Path) -> dict[str, float]:
    """The same work as the pipeline's load -> validate -> split -> train -> evaluate, with
    the library alone in this process."""
    from rxvision.data.sources import load_source
    from rxvision.data.split import fingerprint, stratified_split
    from rxvision.data.validation import apply_policy, validate_dataset
    from rxvision.evaluation import evaluate
    from rxvision.training import fit
    from steps.evaluation import predict_samples

    index = load_source(cfg.data)
    fingerprint(index)
    report = validate_dataset(index, cfg.data.validation)
    index = apply_policy(index, report, cfg.data.validation)
    splits = stratified_split(index, cfg.data.split)
    result = fit(cfg, splits, run_dir)
    preds = predict_samples(result.model, splits.test, list(splits.classes), result.normalization, cfg)
    return evaluate(preds.probs, preds.labels, splits.classes, cfg.evaluation).metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--tiny", action="store_true", help="use the integration tests' tiny config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from stacks.setup import configure_environment, ensure_local_stack

    work = Path(tempfile.mkdtemp(prefix="rxvision-bench-"))
    home = work / "home"
    paths = configure_environment(home, repository=home)  # a clean state, its own .zen

    from rxvision.config import load_config

    overrides = list(args.overrides)
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests" / "integration"))
        from conftest import TINY_OVERRIDES

        overrides = [*TINY_OVERRIDES, *overrides]
    lib_cfg = load_config(args.profile, None, [*overrides, f"data.cache_dir={work / 'lib-cache'}"])
    cfg = load_config(args.profile, None, overrides)

    figures: dict[str, Any] = {"profile": args.profile, "tiny": args.tiny, "overrides": overrides}
    t0 = time.perf_counter()
    metrics = library_only(lib_cfg, work / "lib-run")
    figures["library_s"] = time.perf_counter() - t0
    figures["library_macro_f1"] = metrics.get("macro_f1")

    from pipelines.training import run_outputs, run_training

    for label in ("clean", "warm"):
        t0 = time.perf_counter()
        if label == "clean":
            ensure_local_stack(paths)
        run = run_training(cfg)
        figures[f"pipeline_{label}_s"] = time.perf_counter() - t0
        figures[f"pipeline_{label}_stage"] = run_outputs(run)["registration"]["stage"]
    for label in ("clean", "warm"):
        figures[f"ratio_{label}_vs_library"] = figures[f"pipeline_{label}_s"] / figures["library_s"]

    print(f"library alone (reference)      : {figures['library_s']:7.1f} s")
    for label in ("clean", "warm"):
        print(f"pipeline, {label:5s} state         : {figures[f'pipeline_{label}_s']:7.1f} s"
              f"  ratio {figures[f'ratio_{label}_vs_library']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
