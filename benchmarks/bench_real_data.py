"""Real photos: the product's default run against a bare fine-tuning script, same split, same
machine, one process.

    python benchmarks/bench_real_data.py [--per-class 800] [--ratio 1] [--variant NAME=k=v,k=v]
        [--shares 1,0.2,...] [--seeds N] [--first-seed K] [--extra-test N] [--side 64]
        [--tune N] [--palette] [--threads 1]
    python benchmarks/bench_real_data.py --threads 1 --step-costs 64,128

Data: two classes of Fashion-MNIST (real photos of clothes, Zalando; Debian package
dataset-fashion-mnist, installs offline), written out as an ImageFolder of 64 px PNGs (bicubic
from 28 px, so the folder passes the default min_resolution); ``--ratio 6`` keeps 1/6 of the
last class (an imbalanced variant), ``--shares`` sets each class's share. The product run is
what a user gets from ``run.py --pipeline training --set data.source=imagefolder --set
data.path=DIR``: the demo profile with its real-data recipe, through the library (load,
validate, split, fit, evaluate). The reference is benchmarks/reference_finetune.py on the same
train split (it uses no val split, 8 epochs), scored on the same test split. ``--variant`` adds
product runs with overrides (ablations); ``--seeds N`` repeats every run per training seed;
``--extra-test N`` also scores every run on photos from Fashion-MNIST's test file (a larger
test set than the split's) and prints each product run's last-epoch weights and other TTA
setting beside it. ``--tune N`` adds the library's tuning study on train/val and a final run of
its best parameters. Prints accuracy and macro-F1 with bootstrap intervals, wall time, each
product run's phases (wall and CPU seconds), the majority-class baseline, and the machine's
load (other jobs share the cores). ``--step-costs`` only measures one training step's CPU cost
and gradient error in fp32, bf16 and channels_last.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rxvision.telemetry import disable_telemetry

disable_telemetry()

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_finetune import train_and_predict

from rxvision.config import EvaluationConfig, RxVisionConfig, config_from_dict, load_config
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
from rxvision.training.checkpoint import read_last
from rxvision.tuning import apply_params, run_study

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
    out: Path,
    classes: list[str],
    per_class: int,
    shares: list[float],
    side: int,
    seed: int = 0,
    palette: bool = False,
    part: str = "train",
) -> dict[str, int]:
    """``per_class`` x share images of each class from Fashion-MNIST's ``part`` file ("train",
    or "t10k": the test file, disjoint from it), as 8-bit grayscale PNGs (with ``palette``,
    every other one as a palette PNG)."""
    if not (FASHION_DIR / f"{part}-images-idx3-ubyte.gz").is_file():
        raise RxVisionError(
            f"Fashion-MNIST not found in {FASHION_DIR}", "apt-get install dataset-fashion-mnist"
        )
    images = _idx(FASHION_DIR / f"{part}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _idx(FASHION_DIR / f"{part}-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(seed)
    counts = {}
    for k, name in enumerate(classes):
        n = max(5, round(per_class * shares[k]))
        rows = rng.choice(np.flatnonzero(labels == FASHION_CLASSES.index(name)), n, replace=False)
        (out / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(rows):
            image = Image.fromarray(images[i]).resize((side, side), Image.BICUBIC)
            (image.convert("P") if palette and j % 2 else image).save(out / name / f"{i}.png")
        counts[name] = n
    return counts


def _scores(metrics: dict) -> str:
    return (
        f"acc {metrics['accuracy']:.4f} [{metrics['accuracy_ci_low']:.4f}, "
        f"{metrics['accuracy_ci_high']:.4f}]  macro_f1 {metrics['macro_f1']:.4f} "
        f"[{metrics['macro_f1_ci_low']:.4f}, {metrics['macro_f1_ci_high']:.4f}]"
    )


def _row(name: str, run: Run) -> str:
    extra = f"  | extra test {_scores(run.extra)}" if run.extra else ""
    return f"{name:<28} {_scores(run.metrics)}  {run.seconds:6.0f} s{extra}"


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (loader workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Phases:
    """Wall and CPU seconds of the named phases of one run, in order."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []
        self.note = ""
        self._wall, self._cpu = time.perf_counter(), _cpu_s()

    def mark(self, name: str) -> None:
        wall, cpu = time.perf_counter(), _cpu_s()
        self.rows.append((name, wall - self._wall, cpu - self._cpu))
        self._wall, self._cpu = wall, cpu

    def split(self, name: str, parts: dict[str, float]) -> None:
        """Break the last phase's wall time into ``parts`` (wall s, from the run's history);
        the remainder keeps the phase's name."""
        last, wall, cpu = self.rows.pop()
        for part, seconds in parts.items():
            self.rows.append((f"{last}: {part}", seconds, float("nan")))
        self.rows.append((f"{last}: {name}", wall - sum(parts.values()), float("nan")))
        self.rows.append((f"{last} (total)", wall, cpu))

    def table(self, title: str) -> str:
        lines = [f"  phases of {title} (wall s / CPU s){self.note}:"]
        lines += [f"    {n:<34} {w:7.1f} {c:7.1f}" for n, w, c in self.rows]
        return "\n".join(lines)


def _fit_parts(history: list[dict], train_images: int, batch: int) -> dict[str, float]:
    """Training and validation wall seconds of the fit loop, from its history rows."""
    trained = (train_images // batch) * batch  # drop_last
    train_s = sum(trained / r["images_per_s"] for r in history)
    return {
        "train epochs": train_s,
        "validation passes": sum(r["epoch_time_s"] for r in history) - train_s,
    }


def product_config(data_dir: Path, work: Path, overrides: list[str]) -> RxVisionConfig:
    """What ``run.py --pipeline training --set data.source=imagefolder --set data.path=DIR``
    trains (the demo profile, its real-data recipe picked by the source), plus ``overrides``."""
    return load_config(
        "demo",
        overrides=[
            "data.source=imagefolder",
            f"data.path={data_dir}",
            f"data.cache_dir={work / 'cache'}",
            *overrides,
        ],
    )


@dataclass
class Run:
    """One run's test-split metrics, wall seconds and phases; ``extra``: its metrics on the
    extra test set (``--extra-test``), if any."""

    metrics: dict
    seconds: float
    phases: Phases | None = None
    extra: dict | None = None
    # the product's last-epoch weights on the same test sets, beside the checkpoint that
    # training.checkpoint.select chose: (test split, extra test) metrics
    last: tuple[dict, dict | None] | None = None
    # the same weights with the other evaluation.tta setting: (test split, extra test) metrics
    other_tta: tuple[dict, dict | None] | None = None


def _score(probs, labels, classes, cfg: EvaluationConfig) -> dict:
    return evaluate(probs, labels, classes, cfg).metrics


def product_run(cfg: RxVisionConfig, work: Path, splits, extra=None) -> Run:
    """One run through the library on ``splits`` (load + validate is timed on the source, as
    a user's run does it); ``extra``: more test samples scored by the same weights."""
    start = time.perf_counter()
    phases = Phases()
    index = load_source(cfg.data)
    apply_policy(index, validate_dataset(index, cfg.data.validation), cfg.data.validation)
    phases.mark("load + validate data")
    result = fit(cfg, splits, work / f"run-{len(list(work.glob('run-*')))}")
    phases.mark("fit")
    plan = result.time_budget
    phases.note = f", {result.epochs_run} epochs" + (
        f" (time budget {plan['budget_s']:.0f} s, epoch 1 took {plan['measured_epoch_s']:.0f} s)"
        if plan
        else ""
    )
    phases.split(
        "setup, checkpoints, rest",
        _fit_parts(result.history, len(splits.train), cfg.data.loader.batch_size),
    )

    def infer(samples, tta, model=result.model):
        data = ImageDataset(samples, splits.label_map, build_eval_transform(result.normalization))
        loader = build_loader(data, cfg.data.loader, train=False)
        preds = predict(model, loader, torch.device("cpu"), tta=tta)
        return _score(preds.probs, preds.labels, splits.classes, cfg.evaluation)

    metrics = infer(splits.test, cfg.evaluation.tta)
    phases.mark(f"test inference (tta {cfg.evaluation.tta})")
    seconds = time.perf_counter() - start
    # the other TTA setting on the same weights (a paired comparison; not in the timings)
    other = "none" if cfg.evaluation.tta == "flip" else "flip"
    other_tta = (infer(splits.test, other), infer(extra, other) if extra else None)
    phases.note += f"; with tta {other}: {_scores(other_tta[0])}"
    extra_metrics = infer(extra, cfg.evaluation.tta) if extra else None
    # the last epoch's weights beside the chosen checkpoint (a paired comparison)
    last_model = copy.deepcopy(result.model)
    last_model.load_state_dict(read_last(result.run_dir).model)
    last = (
        infer(splits.test, cfg.evaluation.tta, last_model),
        infer(extra, cfg.evaluation.tta, last_model) if extra else None,
    )
    phases.note += f"; checkpoint {result.best_checkpoint.name} of {result.epochs_run} epochs"
    phases.note += f"; last-epoch weights: {_scores(last[0])}"
    return Run(metrics, seconds, phases, extra_metrics, last, other_tta)


def step_costs(cfg: RxVisionConfig, sizes: list[int], rounds: int = 3, steps: int = 4) -> None:
    """CPU milliseconds per training step (batch of the recipe's size, the recipe's backbone,
    AdamW, its loss) in fp32, bf16 autocast (with the product's CPU guard) and channels_last,
    every layer trained, and fp32 channels_last with the recipe's leading stages frozen
    (model.freeze_stages, 3 where the recipe freezes none); interleaved round by round so load
    changes hit every setting alike; the median of the rounds. CPU time, not wall: other jobs
    on the machine change wall time far more."""
    from rxvision.models import build_model
    from rxvision.training.cpu_bf16 import cpu_supports_bf16, guard_cpu_bf16

    frozen = cfg.model.freeze_stages or 3
    settings = {  # name: (bf16, channels_last, frozen stages)
        "fp32": (False, False, 0),
        "bf16": (True, False, 0),
        "fp32 channels_last": (False, True, 0),
        "bf16 channels_last": (True, True, 0),
        f"fp32 channels_last, {frozen} stages frozen": (False, True, frozen),
    }
    batch = cfg.data.loader.batch_size
    print(f"step costs (CPU ms per step of {batch}; avx512_bf16/amx: {cpu_supports_bf16()}):")
    for size in sizes:
        models = {}
        for name, (bf16, cl, stages) in settings.items():
            torch.manual_seed(0)
            model = build_model(cfg.model.model_copy(update={"freeze_stages": stages}), 2)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            if bf16:
                guard_cpu_bf16(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            models[name] = (model.train(), opt, bf16, cl, stages)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.training.label_smoothing)
        x = torch.randn(batch, 3, size, size)
        y = torch.randint(0, 2, (batch,))
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(rounds):
            for name, (model, opt, bf16, cl, _) in models.items():
                xb = x.contiguous(memory_format=torch.channels_last) if cl else x
                for i in range(steps + 1):  # the first step of a round warms up
                    start = time.process_time()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        loss = loss_fn(model(xb).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if i:
                        times[name].append(time.process_time() - start)
        errors = _gradient_errors(models, cfg, x, y, loss_fn)
        base = float(np.median(times["fp32"]))
        print(
            f"  {size:4d} px: "
            + ", ".join(
                f"{n} {np.median(t) * 1e3:.0f} ms ({np.median(t) / base:.2f}x, "
                f"gradient error {errors[n]:.2%})"
                for n, t in times.items()
            ),
            flush=True,
        )


def _gradient_errors(models: dict, cfg: RxVisionConfig, x, y, loss_fn) -> dict[str, float]:
    """Per setting: the median, over parameters with a gradient norm > 1e-3, of the relative
    error of one batch's gradient against the same model in float64 (fresh pretrained
    weights, no dropout, so only the arithmetic differs)."""
    import copy

    from rxvision.models import build_model
    from rxvision.training.cpu_bf16 import guard_cpu_bf16

    torch.manual_seed(0)
    base = build_model(cfg.model.model_copy(update={"dropout": 0.0, "freeze_stages": 0}), 2)

    def grads(model, xb, bf16=False):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(xb).float(), y)
        loss.backward()
        return {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}

    def fresh(stages: int):
        model = copy.deepcopy(base)
        if stages:
            model.freeze_stages(stages)  # their BatchNorm in eval mode: another forward
        return model

    truths = {}  # frozen stages -> float64 gradients of the same model, the ones compared
    out = {}
    for name, (_, _, bf16, cl, stages) in models.items():
        if stages not in truths:
            truth = grads(fresh(stages).double(), x.double())
            truths[stages] = (truth, [n for n, g in truth.items() if g.norm() > 1e-3])
        truth, keep = truths[stages]
        model = fresh(stages)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        if bf16:
            guard_cpu_bf16(model)
        xb = x.contiguous(memory_format=torch.channels_last) if cl else x
        got = grads(model, xb, bf16)
        out[name] = float(
            np.median([((got[n] - truth[n]).norm() / truth[n].norm()).item() for n in keep])
        )
    return out


# The study's search space around the real-data recipe: the knobs the issue names that keep
# the run's length (image size and backbone change the time per epoch, so they stay fixed).
TUNING_SPACE = {
    "training.optimizer.lr": {"low": 3e-4, "high": 3e-3, "log": True},
    "training.optimizer.weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
    "training.label_smoothing": {"low": 0.0, "high": 0.2},
    "augmentation_strength": {"low": 0.5, "high": 1.5},
    "model.dropout": {"low": 0.0, "high": 0.4},
}


def tuning_study(base: RxVisionConfig, splits, work: Path, n_trials: int, extra=None) -> list[str]:
    """The library's tuning on the train/val splits (the recipe enqueued as trial 0; the test
    split is withheld from every trial), then one final run of the best parameters scored on
    the test split like the default run. Returns the result rows."""
    cfg = base.model_copy(deep=True)
    recipe = {
        "training.optimizer.lr": cfg.training.optimizer.lr,
        "training.optimizer.weight_decay": cfg.training.optimizer.weight_decay,
        "training.label_smoothing": cfg.training.label_smoothing,
        "augmentation_strength": 1.0,
        "model.dropout": cfg.model.dropout,
    }
    cfg = apply_params(cfg, {})  # a validated copy
    data = cfg.model_dump(mode="json")
    data["tuning"].update(
        study_name="bench-real",
        n_trials=n_trials,
        timeout_s=None,
        metric=cfg.training.checkpoint.monitor,
        search_space=TUNING_SPACE,
        enqueue=[recipe],
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2},
    )
    cfg = config_from_dict(data)
    start = time.perf_counter()
    outcome = run_study(cfg, splits, work / "trials", f"sqlite:///{work / 'optuna.db'}")
    study_s = time.perf_counter() - start
    states = [t["state"] for t in outcome.trials]
    print(
        f"tuning: {len(states)} trials ({states.count('complete')} complete, "
        f"{states.count('pruned')} pruned) in {study_s:.0f} s; best trial "
        f"{outcome.best['number']} ({outcome.metric} {outcome.best['value']:.4f} on val): "
        f"{outcome.best['params']}",
        flush=True,
    )
    for t in outcome.trials:
        print(
            f"  trial {t['number']}: {t['state']} after {t['epochs']} epochs, "
            f"value {t['value'] if t['value'] is not None else t['last_reported']}, "
            f"{t['duration_s'] or 0:.0f} s",
            flush=True,
        )
    tuned = product_run(apply_params(base, outcome.best["params"]), work, splits, extra)
    print(tuned.phases.table("product tuned"), flush=True)
    row = _row("product tuned (final run)", tuned) + f"  (+ study {study_s:.0f} s)"
    print(row, flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--classes", default="tshirt_top,shirt", help="two or more Fashion-MNIST classes"
    )
    parser.add_argument("--per-class", type=int, default=800)
    parser.add_argument("--ratio", type=float, default=1.0, help="largest / smallest class")
    parser.add_argument(
        "--shares",
        default="",
        help="per class, its count as a share of --per-class (e.g. 1,0.2,0.07,0.47: four "
        "graded levels, 14:1); instead of --ratio",
    )
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
    parser.add_argument(
        "--palette", action="store_true", help="write every other PNG as a palette image"
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--step-costs",
        default="",
        metavar="SIZES",
        help="only measure the CPU cost of a training step in fp32/bf16/channels_last at "
        "these image sizes (comma-separated), then exit",
    )
    parser.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="N",
        help="a tuning study of N trials (the recipe first) on train/val, then the best "
        "parameters' final run on the test split",
    )
    parser.add_argument("--reference-fp32", action="store_true", help="reference without bf16")
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=8,
        help="the script's epochs (8: the issue's script); the product runs its own recipe's",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat every run with N training seeds, from --first-seed on",
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="training seeds start here (the split's not)"
    )
    parser.add_argument(
        "--extra-test",
        type=int,
        default=0,
        metavar="N",
        help="also score every run on N images per class (times its share) from "
        "Fashion-MNIST's test file: a larger test set than the split's, disjoint from it",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if args.threads:
        torch.set_num_threads(args.threads)
        args.overrides = [f"training.num_threads={args.threads}", *args.overrides]
    work = Path(tempfile.mkdtemp(prefix="rxv-real-"))
    if args.step_costs:
        cfg = product_config(work, work, args.overrides)
        step_costs(cfg, [int(v) for v in args.step_costs.split(",")])
        return
    classes = args.classes.split(",")
    shares = (
        [float(v) for v in args.shares.split(",")]
        if args.shares
        else [1.0] * (len(classes) - 1) + [1.0 / args.ratio]
    )
    if len(shares) != len(classes):
        parser.error(f"--shares needs one value per class ({len(classes)})")
    counts = write_imagefolder(
        work / "photos", classes, args.per_class, shares, args.side, palette=args.palette
    )
    load0 = os.getloadavg()
    kind = "grayscale + palette" if args.palette else "grayscale"
    print(f"data: Fashion-MNIST {counts} as {args.side}px {kind} PNGs in {work / 'photos'}")
    print(
        f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average at start {load0[0]:.2f}"
    )
    base_cfg = product_config(work / "photos", work, args.overrides)
    index = load_source(base_cfg.data)
    splits = stratified_split(
        apply_policy(
            index, validate_dataset(index, base_cfg.data.validation), base_cfg.data.validation
        ),
        base_cfg.data.split,
    )
    extra = None
    if args.extra_test:
        counts = write_imagefolder(
            work / "extra", classes, args.extra_test, shares, args.side,
            palette=args.palette, part="t10k",
        )  # fmt: skip
        extra = load_source(base_cfg.data.model_copy(update={"path": work / "extra"})).samples
        print(f"extra test set: Fashion-MNIST's test file, {counts} (disjoint from the split)")
    print(
        f"recipe {base_cfg.recipe}: {base_cfg.model.backbone} @{base_cfg.data.image_size}px, "
        f"{base_cfg.training.epochs} epochs, precision {base_cfg.training.precision}, "
        f"augmentation {base_cfg.data.augmentation.preset}, split {len(splits.train)}/"
        f"{len(splits.val)}/{len(splits.test)}",
        flush=True,
    )

    eval_cfg = EvaluationConfig(bootstrap_samples=base_cfg.evaluation.bootstrap_samples)
    settings = [("default", [])] + [
        (name, [s for s in sets.split(",") if s])
        for name, _, sets in (spec.partition("=") for spec in args.variant)
    ]
    runs: dict[str, list[Run]] = {}
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        tag = f" seed {seed}" if args.seeds > 1 or args.first_seed else ""
        for name, extra_sets in settings:
            cfg = product_config(
                work / "photos", work, [*args.overrides, *extra_sets, f"training.seed={seed}"]
            )
            run = product_run(cfg, work, splits, extra)
            runs.setdefault(f"product {name}", []).append(run)
            rows.append(_row(f"product {name}{tag}", run))
            print(rows[-1], flush=True)
            print(run.phases.table(f"product {name}{tag}"), flush=True)
            if name == "default" and not args.no_reference:
                run = reference_run(splits, cfg, eval_cfg, seed, args, extra)
                runs.setdefault("reference script", []).append(run)
                rows.append(_row(f"reference script{tag}", run))
                print(rows[-1], flush=True)

    if args.tune:
        rows += tuning_study(base_cfg, splits, work, args.tune, extra)

    support = [sum(s.label == c for s in splits.test) for c in splits.classes]
    base = majority_baseline(support)
    print(
        "\n== real-data benchmark (test split: "
        f"{len(splits.test)} images, {dict(zip(splits.classes, support))}) =="
    )
    print("\n".join(rows))
    print(f"{'majority class':<28} acc {base['accuracy']:.4f}  macro_f1 {base['macro_f1']:.4f}")
    if args.seeds > 1:
        print(f"\n== means over {args.seeds} seeds (min-max) ==")
        for name, group in runs.items():
            print(_mean_row(name, group))
    print(
        f"load average at end {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min); "
        "times are end to end (the product's includes data validation and its val passes)"
    )


def reference_run(splits, cfg: RxVisionConfig, eval_cfg, seed: int, args, extra) -> Run:
    """benchmarks/reference_finetune.py on the train split at the product's image size, for
    ``--reference-epochs``; scored on the test split (and the extra test set)."""
    label_of = splits.label_map
    items = lambda samples: [(s.path, label_of.index(s.label)) for s in samples]
    tests = items(splits.test) + (items(extra) if extra else [])
    start, cpu0 = time.perf_counter(), _cpu_s()
    probs, train_s = train_and_predict(
        items(splits.train),
        tests,
        len(splits.classes),
        size=cfg.data.image_size,
        epochs=args.reference_epochs,
        bf16=not args.reference_fp32,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    print(
        f"  phases of reference script: train epochs {train_s:.1f} s wall, the rest "
        f"(setup, test inference) {seconds - train_s:.1f} s; CPU {_cpu_s() - cpu0:.1f} s",
        flush=True,
    )
    labels = np.array([label for _, label in tests])
    n = len(splits.test)
    return Run(
        _score(probs[:n], labels[:n], splits.classes, eval_cfg),
        seconds,
        extra=_score(probs[n:], labels[n:], splits.classes, eval_cfg) if extra else None,
    )


def _mean_row(name: str, group: list[Run]) -> str:
    def stat(values):
        return f"{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"

    def scores(runs_metrics, runs_extra):
        out = f"acc {stat([m['accuracy'] for m in runs_metrics])}"
        out += f"  macro_f1 {stat([m['macro_f1'] for m in runs_metrics])}"
        if runs_extra[0]:
            out += f"  | extra test acc {stat([m['accuracy'] for m in runs_extra])}"
            out += f" macro_f1 {stat([m['macro_f1'] for m in runs_extra])}"
        return out

    out = f"{name:<28} {scores([r.metrics for r in group], [r.extra for r in group])}"
    out += f"  | wall {np.mean([r.seconds for r in group]):.0f} s"
    if group[0].last:
        last = scores([r.last[0] for r in group], [r.last[1] for r in group])
        out += f"\n{'  (last-epoch weights)':<28} {last}"
    if group[0].other_tta:
        other = scores([r.other_tta[0] for r in group], [r.other_tta[1] for r in group])
        out += f"\n{'  (other tta setting)':<28} {other}"
    return out


if __name__ == "__main__":
    main()
