"""Monitoring costs, each next to its reference measured in the same process:

1. feature extraction per image (rxvision.monitoring.features) at several upload sizes,
   against the model's own inference per image;
2. the in-process serving path (decode JPEG -> preprocess -> ONNX predict) with traffic
   logging on against off (goal: on/off throughput >= 0.95), at batch 1 and batch 8;
3. reading 100k logged rows and the drift check on them (Evidently report + whylogs
   comparison), against the same on 1k rows.

    /root/.venvs/rxvision/bin/python benchmarks/bench_monitoring.py [--rows 100000] [--rounds 5]
        [--pipeline | --only-pipeline]   # 4. the ZenML monitoring pipeline on 1k and 100k rows
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rxvision.telemetry import disable_telemetry

disable_telemetry()
warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)


def _timeit(fn, repeat: int) -> float:
    """Median seconds of one call over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_features(predictor) -> None:
    from rxvision.monitoring.features import image_features
    from tests.support.simulate import pill_image

    rng = np.random.default_rng(0)
    print("\n## 1. feature extraction per image (median of 200 calls)")
    batch = predictor.preprocess([pill_image(rng, 160)])
    predictor.predict_arrays(batch)
    t_model = _timeit(lambda: predictor.predict_arrays(batch), 50)
    print(f"reference: model inference, batch 1, {predictor.runtime}: {t_model * 1e3:.2f} ms/img")
    for side in (64, 160, 512, 1024):
        img = np.kron(pill_image(rng, 64), np.ones((side // 64, side // 64, 1), dtype=np.uint8))
        t = _timeit(lambda img=img: image_features(img, 12345), 200)
        print(
            f"features {side:>4}x{side:<4}: {t * 1e3:.3f} ms/img  "
            f"({t / t_model:.3f} x model inference)"
        )


def bench_serving_path(predictor, rounds: int, tmp: Path) -> None:
    import cv2

    from bentos.traffic import TrafficLogger, monitoring_options
    from rxvision.config import ServingConfig
    from rxvision.serving.decode import decode_image
    from tests.support.simulate import traffic

    images = traffic(64, seed=1, size=160)
    blobs = [cv2.imencode(".jpg", im[:, :, ::-1])[1].tobytes() for im in images]
    opts = monitoring_options(ServingConfig(log_dir=tmp / "log"))
    tl = TrafficLogger(predictor.classes, model_version="bench", monitor_options=opts)

    def serve(batch_size: int, log: bool) -> tuple[float, float]:
        """(img/s wall clock, img per CPU-second of this process)."""
        w, c = time.perf_counter(), time.process_time()
        for start in range(0, len(blobs), batch_size):
            chunk = blobs[start : start + batch_size]
            decoded = [decode_image(b) for b in chunk]
            probs, emb = predictor.predict_arrays(predictor.preprocess(decoded))
            if log:
                tl.log_prediction(
                    decoded, probs, file_sizes=[len(b) for b in chunk], embeddings=emb
                )
        return len(blobs) / (time.perf_counter() - w), len(blobs) / (time.process_time() - c)

    print(
        f"\n## 2. in-process serving path, {len(blobs)} JPEG uploads (160 px): "
        f"decode -> preprocess -> "
        f"ONNX predict [-> log_prediction]; {rounds} interleaved rounds, medians"
    )
    print(
        "   wall img/s is what a client sees on this (shared) machine; img per CPU-second is less "
        "sensitive to other processes and is what bounds a CPU-saturated server"
    )
    serve(8, True)  # warm up (also initialises the monitor's files)
    for bs in (1, 8):
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(rounds):
            for log in (False, True):
                runs[log].append(serve(bs, log))
        (w_off, c_off), (w_on, c_on) = (
            tuple(statistics.median(x[i] for x in runs[log]) for i in (0, 1))
            for log in (False, True)
        )
        print(
            f"batch {bs}: wall img/s off {w_off:6.1f} on {w_on:6.1f} on/off {w_on / w_off:.3f} | "
            f"img/CPU-s off {c_off:6.1f} on {c_on:6.1f} on/off {c_on / c_off:.3f}"
        )
    per_img = []
    imgs8 = [decode_image(b) for b in blobs[:8]]
    probs8, emb8 = predictor.predict_arrays(predictor.preprocess(imgs8))
    for _ in range(50):
        c = time.process_time()
        tl.log_prediction(imgs8, probs8, file_sizes=[len(b) for b in blobs[:8]], embeddings=emb8)
        per_img.append((time.process_time() - c) / 8)
    print(
        f"log_prediction alone: {statistics.median(per_img) * 1e3:.3f} ms CPU per image (batch 8)"
    )
    assert tl.errors == 0, tl.errors
    log_bytes = sum(f.stat().st_size for f in (tmp / "log").rglob("data.*"))
    print(f"(rows logged: {tl.rows}; log files: {log_bytes / 1e6:.1f} MB)")


def _rows(n: int, base: pd.DataFrame, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """n rows resampled from real feature rows with a little jitter (a synthetic 'day')."""
    rng = np.random.default_rng(seed)
    df = base.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    for col in ("brightness", "contrast", "sharpness", "colourfulness", "confidence"):
        df[col] = df[col] * (1 + rng.normal(0, 0.02, n)) - shift * (col == "brightness")
    return df


def bench_drift(rows: int, tmp: Path) -> None:
    from rxvision.config import MonitoringConfig
    from rxvision.monitoring.drift import detect_drift
    from rxvision.monitoring.features import feature_table
    from rxvision.monitoring.traffic_log import read_traffic_log, write_traffic_rows
    from tests.support.simulate import encoded_size, traffic

    imgs = traffic(600, seed=2)
    probs = np.random.default_rng(0).dirichlet(np.ones(6) * 0.2, size=len(imgs))
    base = feature_table(imgs, [encoded_size(i) for i in imgs], probs, [f"c{i}" for i in range(6)])
    reference = _rows(2000, base, seed=3)
    cfg = MonitoringConfig()
    print(
        f"\n## 3. monitoring on logged rows (reference {len(reference)} rows; "
        f"Evidently report + whylogs comparison)"
    )
    detect_drift(reference, _rows(200, base, 4), cfg)  # warm-up: imports, first render
    results = {}
    for n in (1000, rows):
        log_dir = tmp / f"drift{n}"
        now = time.time()
        write_traffic_rows(
            log_dir / "rxvision_traffic" / "data" / "data.0.log",
            _rows(n, base, 5, shift=0.1),
            logged_at=now - 60,
        )
        t0 = time.perf_counter()
        current = read_traffic_log(log_dir, now=now)
        t1 = time.perf_counter()
        result = detect_drift(reference, current, cfg)
        t2 = time.perf_counter()
        results[n] = (t1 - t0, t2 - t1)
        print(
            f"{n:>7} rows: read log {t1 - t0:6.2f} s | detect_drift {t2 - t1:6.2f} s | "
            f"total {t2 - t0:6.2f} s | {result.outcome} ({', '.join(result.drifted_columns)})"
        )
    small, big = results[1000], results[rows]
    print(
        f"ratio {rows} rows / 1000 rows: total {sum(big) / sum(small):.2f}x "
        f"for {rows / 1000:.0f}x the rows"
    )


PIPELINE_OVERRIDES = (  # a tiny model: the pipeline's cost is in the rows, not the model
    "data.synthetic.num_classes=3",
    "data.synthetic.images_per_class=16",
    "data.synthetic.image_size=48",
    "data.image_size=32",
    "data.loader.num_workers=0",
    "data.loader.persistent_workers=false",
    "data.loader.pin_memory=false",
    "data.split.val_fraction=0.25",
    "data.split.test_fraction=0.25",
    "data.validation.min_resolution=16",
    "data.validation.min_images_per_class=2",
    "training.epochs=1",
    "training.early_stopping.enabled=false",
    "evaluation.bootstrap_samples=0",
    "gate.min_accuracy=0",
    "gate.min_macro_f1=0",
    "gate.max_ece=1",
)


def bench_pipeline(rows: int, tmp: Path) -> None:
    """`python run.py --pipeline monitoring` minus the CLI: the ZenML pipeline on a temporary
    local stack, on 1k and on ``rows`` logged rows (resampled from the reference artifact)."""
    from pipelines.monitoring import production_reference, run_monitoring
    from pipelines.training import run_training
    from rxvision.config import load_config
    from rxvision.monitoring.traffic_log import write_traffic_rows
    from stacks.setup import configure_environment, ensure_local_stack

    paths = configure_environment(tmp / "home", repository=tmp / "home")
    ensure_local_stack(paths)
    cfg = load_config("demo", None, list(PIPELINE_OVERRIDES))
    print(f"\n## 4. monitoring pipeline on the local ZenML stack (temporary state in {paths.home})")
    t = time.perf_counter()
    run_training(cfg)
    print(f"(setup: tiny training pipeline {time.perf_counter() - t:.1f} s)")
    _, reference = production_reference()
    base = reference.load()
    timings = {}
    for n in (1000, rows):
        cfg.serving.log_dir = tmp / f"pipe{n}"
        now = time.time()
        current = _rows(n, base, 7, shift=0.1)
        write_traffic_rows(
            cfg.serving.log_dir / "rxvision_traffic" / "data" / "data.0.log",
            current,
            logged_at=now - 60,
        )
        t = time.perf_counter()
        _, result = run_monitoring(cfg, "1h", now=now)
        timings[n] = time.perf_counter() - t
        print(
            f"{n:>7} rows: pipeline {timings[n]:6.1f} s | {result['outcome']} "
            f"({', '.join(result['drifted_columns'])})"
        )
    print(f"ratio {rows} rows / 1000 rows: {timings[rows] / timings[1000]:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="also time the ZenML monitoring pipeline (trains a tiny model first)",
    )
    p.add_argument("--only-pipeline", action="store_true", help="only the pipeline section")
    args = p.parse_args()
    from rxvision.serving.predictor import Predictor
    from tests.support.tiny import make_tiny_bundle

    print(f"# bench_monitoring  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.pipeline or args.only_pipeline:
            bench_pipeline(args.rows, tmp)
            if args.only_pipeline:
                return
        bundle = make_tiny_bundle(
            tmp / "bundle",
            backbone="tf_efficientnet_lite0",
            image_size=128,
            num_classes=12,
            train_steps=0,
        )
        predictor = Predictor.from_bundle(
            bundle, runtime="onnx", threads=args.threads, onnx_dir=tmp / "onnx"
        )
        print(
            f"model: tf_efficientnet_lite0 @128 (untrained; timing only), "
            f"runtime {predictor.runtime}, "
            f"embedding output: {predictor.has_embedding}"
        )
        bench_features(predictor)
        bench_serving_path(predictor, args.rounds, tmp)
        bench_drift(args.rows, tmp)


if __name__ == "__main__":
    main()
