"""Pipeline overhead and demo wall time.

Measures, in one process and on the same config (wall seconds and CPU seconds):
  1. reference: the library alone (load, validate, split, fit, evaluate) - no ZenML - once
     cold (first imports, synthetic data generated) and once warm (data cached);
  2. the ZenML training pipeline on a fresh local stack (a clean RXVISION_HOME: data generated,
     ZenML store and stack created, nothing cached);
  3. the same pipeline again on that now-warm state (data cached, cached data steps);
and prints the ratios pipeline clean / library cold and pipeline warm / library warm, with
the wall and CPU seconds of each step (from ZenML's "Step `x` has started/finished" log lines).
``--compare-metadata-cache`` then runs the warm pipeline twice more, without and with
``pipelines.metadata_cache`` (ZenML re-reading every package's metadata), alternating.

    python benchmarks/bench_pipeline.py                       # demo profile (minutes)
    python benchmarks/bench_pipeline.py --tiny                # the integration tests' tiny config
    python benchmarks/bench_pipeline.py --set training.epochs=2
    python benchmarks/bench_pipeline.py --tiny --compare-metadata-cache
    python benchmarks/bench_pipeline.py --pipeline-only     # the clean run alone, per step

The library reference runs first, on its own data cache, so the pipeline's clean run still
has to generate the synthetic data (as a user's first run does); Python imports are already
warm for the pipeline runs (a user's first `python run.py` also pays them).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children: on a shared, busy
    machine this moves far less than wall time, so it is reported next to it."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class StepClock(logging.Handler):
    """Wall and CPU seconds per step, taken at ZenML's step start/finish log lines (the local
    orchestrator runs steps in this process, one after the other)."""

    PATTERN = re.compile(r"Step `?([\w-]+)`? has (started|finished)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.open: dict[str, tuple[float, float]] = {}
        self.steps: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))
        if match is None:
            return
        name, event = match.groups()
        now = (time.perf_counter(), cpu_seconds())
        if event == "started":
            self.open[name] = now
        elif name in self.open:
            t0, c0 = self.open.pop(name)
            self.steps[name] = (now[0] - t0, now[1] - c0)

    def take(self) -> dict[str, tuple[float, float]]:
        steps, self.steps = self.steps, {}
        return steps


def library_only(cfg: Any, run_dir: Path) -> dict[str, float]:
    """The same work as the pipeline's load -> validate -> split -> train -> evaluate, with
    the library alone in this process."""
    from rxvision.data.sources import load_source
    from rxvision.data.split import fingerprint, stratified_split
    from rxvision.data.validation import apply_policy, validate_dataset
    from rxvision.evaluation import evaluate
    from rxvision.evaluation.model_eval import predict_samples
    from rxvision.training import fit

    index = load_source(cfg.data)
    fingerprint(index)
    report = validate_dataset(index, cfg.data.validation)
    index = apply_policy(index, report, cfg.data.validation)
    splits = stratified_split(index, cfg.data.split)
    result = fit(cfg, splits, run_dir)
    preds = predict_samples(
        result.model, splits.test, list(splits.classes), result.normalization, cfg
    )
    return evaluate(preds.probs, preds.labels, splits.classes, cfg.evaluation).metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument(
        "--tiny", action="store_true", help="use the integration tests' tiny config"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--pipeline-only", action="store_true", help="only the pipeline's clean run (per step)"
    )
    parser.add_argument(
        "--compare-metadata-cache",
        action="store_true",
        help="two more warm runs: without, then with pipelines.metadata_cache",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    clock = StepClock()

    from stacks.setup import configure_environment, ensure_local_stack

    work = Path(tempfile.mkdtemp(prefix="rxvision-bench-"))
    home = work / "home"
    paths = configure_environment(home, repository=home)  # a clean state, its own .zen

    from rxvision.config import load_config

    overrides = list(args.overrides)
    if args.tiny:
        from tests.support.overrides import TINY_OVERRIDES

        overrides = [*TINY_OVERRIDES, *overrides]
    lib_cfg = load_config(args.profile, None, [*overrides, f"data.cache_dir={work / 'lib-cache'}"])
    cfg = load_config(args.profile, None, overrides)

    figures: dict[str, Any] = {"profile": args.profile, "tiny": args.tiny, "overrides": overrides}

    def timed(key: str, fn: Any) -> Any:
        t0, c0 = time.perf_counter(), cpu_seconds()
        result = fn()
        figures[f"{key}_s"] = time.perf_counter() - t0
        figures[f"{key}_cpu_s"] = cpu_seconds() - c0
        return result

    if not args.pipeline_only:
        # cold: pays the imports and generates the synthetic data; warm: the same again
        timed("library_cold", lambda: library_only(lib_cfg, work / "lib-run-1"))
        metrics = timed("library_warm", lambda: library_only(lib_cfg, work / "lib-run-2"))
        figures["library_macro_f1"] = metrics.get("macro_f1")

    import zenml  # noqa: F401  (its logger set-up comes first, then the step clock)

    from pipelines import metadata_cache
    from pipelines.training import run_outputs, run_training

    logging.getLogger("zenml").addHandler(clock)

    def pipeline_run(clean: bool) -> Any:
        if clean:
            ensure_local_stack(paths)  # a first run creates the ZenML store and the stack
        return run_outputs(run_training(cfg))["registration"]["stage"]

    runs = ["pipeline_clean"] if args.pipeline_only else ["pipeline_clean", "pipeline_warm"]
    for key in runs:
        figures[f"{key}_stage"] = timed(key, lambda k=key: pipeline_run(k == "pipeline_clean"))
        figures[f"{key}_steps"] = clock.take()
    if args.compare_metadata_cache:
        for key, cached in (("pipeline_warm_uncached", False), ("pipeline_warm_cached", True)):
            metadata_cache.uninstall()
            if cached:
                timed(key, lambda: pipeline_run(False))
            else:  # call_pipeline installs the cache: not this time
                with mock.patch.object(metadata_cache, "install", lambda: False):
                    timed(key, lambda: pipeline_run(False))
            figures[f"{key}_steps"] = clock.take()
            runs.append(key)
    if not args.pipeline_only:
        for label, ref in (("clean", "library_cold"), ("warm", "library_warm")):
            for unit in ("s", "cpu_s"):
                figures[f"ratio_{label}_{unit}"] = (
                    figures[f"pipeline_{label}_{unit}"] / figures[f"{ref}_{unit}"]
                )

    libs = [] if args.pipeline_only else ["library_cold", "library_warm"]
    for key in [*libs, *runs]:
        line = f"{key:15s}: {figures[key + '_s']:7.1f} s wall {figures[key + '_cpu_s']:7.1f} s CPU"
        if key in ("pipeline_clean", "pipeline_warm") and not args.pipeline_only:
            label = key.split("_")[1]
            line += (
                f"   vs library_{'cold' if label == 'clean' else 'warm'}: "
                f"{figures[f'ratio_{label}_s']:.2f}x wall, "
                f"{figures[f'ratio_{label}_cpu_s']:.2f}x CPU"
            )
        print(line)
    for key in runs:
        steps = figures[f"{key}_steps"]
        print(
            f"{key} per step (wall s / CPU s): "
            + ", ".join(f"{name} {wall:.1f}/{cpu:.1f}" for name, (wall, cpu) in steps.items())
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)  # the temporary state folder and data
    return 0


if __name__ == "__main__":
    sys.exit(main())
