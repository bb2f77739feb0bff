"""Serving throughput and latency, in one run: the service with adaptive batching, the same
service without batching, and the in-process ceiling (decode + preprocess + predict at the
best batch size). Also the time from `bentoml serve` start to ready.

    python benchmarks/bench_serving.py [--backbone tf_efficientnet_lite0] [--size 128] \
        [--concurrency 1 8 32 64] [--duration 10]

What the calibrated answer (label set, uncertain, unknown) costs, in one run: the same model
without and with a calibration in its bundle, served alternately, plus the in-process path:

    python benchmarks/bench_serving.py --calibration [--concurrency 8] [--repeat 3]

Closed-loop clients (each sends its next request when the previous answer arrives) run in this
process with aiohttp, so on a small machine they share the CPU with the server.
Random weights are fine for speed. Figures are printed with their ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def make_uploads(n: int, size: int, seed: int = 0) -> list[bytes]:
    """JPEG uploads a bit larger than the model input, as a camera crop would be."""
    from PIL import Image

    from tests.support.tiny import toy_images

    images, _ = toy_images(n, 8, size, seed=seed)
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


async def closed_loop(url: str, uploads: list[bytes], concurrency: int, duration: float) -> dict:
    """``concurrency`` clients, each posting its next image to /classify when the previous
    answer arrives, for ``duration`` seconds. aiohttp, because the load generator shares the
    CPU with the server: it costs ~1 ms of CPU per request here, httpx ~9 ms at 32 clients."""
    import aiohttp

    latencies: list[float] = []
    codes: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        deadline = time.perf_counter() + duration

        async def worker(i: int) -> None:
            k = i
            while time.perf_counter() < deadline:
                form = aiohttp.FormData()
                form.add_field(
                    "image", uploads[k % len(uploads)], filename="p.jpg", content_type="image/jpeg"
                )
                k += concurrency
                start = time.perf_counter()
                async with session.post(f"{url}/classify", data=form) as resp:
                    await resp.read()
                codes[resp.status] = codes.get(resp.status, 0) + 1
                if resp.status == 200:
                    latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "concurrency": concurrency,
        "ok": len(latencies),
        "codes": codes,
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def ceiling(
    bundle: Path, uploads: list[bytes], batch_sizes: list[int], duration: float, threads: int | None
) -> dict:
    """decode + preprocess + predict in this process, no HTTP: img/s per batch size."""
    from rxvision.serving import ImageLimits, Predictor, decode_image

    predictor = Predictor.from_bundle(bundle, runtime="onnx", threads=threads)
    predictor.warmup(8)
    limits = ImageLimits()
    per_batch = {}
    for bs in batch_sizes:
        done, k = 0, 0
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            blobs = [uploads[(k + j) % len(uploads)] for j in range(bs)]
            k += bs
            predictor.predict([decode_image(b, limits) for b in blobs])
            done += bs
        per_batch[bs] = done / (time.perf_counter() - start)
    best = max(per_batch, key=per_batch.get)
    return {"img_per_s_by_batch": per_batch, "best_batch": best, "img_per_s": per_batch[best]}


def run_server(
    label: str,
    home: Path,
    tag: str,
    overrides: list[str],
    uploads: list[bytes],
    args,
    target: str | None = None,
) -> dict:
    from tests.support.launch import serve

    log = home.parent / f"serve-{label}.log"
    out: dict = {"label": label, "overrides": overrides, "levels": []}
    with serve(
        home, log, overrides=overrides, model_tag=tag, **({"target": target} if target else {})
    ) as server:
        out["startup_s"] = server.startup_s
        asyncio.run(closed_loop(server.url, uploads, 4, 2.0))  # warm the connection pools
        for c in args.concurrency:
            server_cpu, client_cpu = worker_cpu_seconds(server.process.pid), time.process_time()
            res = asyncio.run(closed_loop(server.url, uploads, c, args.duration))
            answered = max(sum(res["codes"].values()), 1)
            used = {
                w: t - server_cpu.get(w, 0.0)
                for w, t in worker_cpu_seconds(server.process.pid).items()
            }
            res["server_cpu_ms_per_req"] = 1000 * sum(used.values()) / answered
            res["client_cpu_ms_per_req"] = 1000 * (time.process_time() - client_cpu) / answered
            # keep-alive connections stay with the worker that accepted them: how even was it?
            res["worker_cpu_share"] = {
                w: round(t / max(sum(used.values()), 1e-9), 2) for w, t in sorted(used.items())
            }
            out["levels"].append(res)
            print(
                f"  {label:<12} c={c:<3} {res['req_per_s']:7.1f} req/s  p50 {res['p50_ms']:7.1f}  "
                f"p95 {res['p95_ms']:7.1f}  "
                f"p99 {res['p99_ms']:7.1f} ms  CPU ms/req server "
                f"{res['server_cpu_ms_per_req']:.1f} client "
                f"{res['client_cpu_ms_per_req']:.1f}  worker CPU shares "
                f"{list(res['worker_cpu_share'].values())}  "
                f"codes {res['codes']}",
                flush=True,
            )
    return out


def in_process_ab(
    plain: Path,
    calibrated: Path,
    uploads: list[bytes],
    batch: int,
    rounds: int,
    duration: float,
    threads: int | None,
) -> dict:
    """decode + preprocess + predict + answers, uncalibrated vs calibrated bundle, alternated
    in short slices so both see the same machine load; also the answer step alone."""
    from rxvision.serving import ImageLimits, Predictor, decode_image

    predictors = {
        k: Predictor.from_bundle(b, runtime="onnx", threads=threads)
        for k, b in (("plain", plain), ("calibrated", calibrated))
    }
    for pr in predictors.values():
        pr.warmup(batch)
    limits = ImageLimits()
    done = {k: 0 for k in predictors}
    spent = {k: 0.0 for k in predictors}
    for r in range(rounds):
        for name, pr in predictors.items():
            k, start = r, time.perf_counter()
            while time.perf_counter() - start < duration / rounds:
                blobs = [uploads[(k + j) % len(uploads)] for j in range(batch)]
                k += batch
                pr.predict([decode_image(b, limits) for b in blobs])
                done[name] += batch
            spent[name] += time.perf_counter() - start
    rate = {k: done[k] / spent[k] for k in predictors}
    # the answer step alone (top-k; with the calibration: temperature, set, OOD), per image
    out = predictors["calibrated"].infer(
        predictors["calibrated"].preprocess(
            [decode_image(uploads[j], limits) for j in range(batch)]
        )
    )
    answer_us = {}
    for name, pr in predictors.items():
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            pr.to_predictions(out)
            n += 1
        answer_us[name] = 1e6 * (time.perf_counter() - start) / (n * batch)
    return {
        "img_per_s": rate,
        "ratio": rate["calibrated"] / rate["plain"],
        "answer_us_per_img": answer_us,
    }


def calibration_cost(
    args, work: Path, bundle: Path, uploads: list[bytes], common: list[str]
) -> None:
    """The service with and without calibration, alternated over ``--repeat`` rounds."""
    from bentos.store import save_bundle_to_bentoml
    from tests.support.tiny import calibrate_tiny_bundle

    calibrated = calibrate_tiny_bundle(bundle, work / "calibrated")
    tags = {
        "plain": str(save_bundle_to_bentoml(bundle).tag),
        "calibrated": str(save_bundle_to_bentoml(calibrated).tag),
    }
    ab = in_process_ab(bundle, calibrated, uploads, 8, 10, 2 * args.duration, args.threads)
    print(
        "in process (decode+preprocess+predict+answer, batch 8): plain "
        f"{ab['img_per_s']['plain']:.1f}, "
        f"calibrated {ab['img_per_s']['calibrated']:.1f} img/s -> ratio {ab['ratio']:.3f}; answer "
        "step "
        f"{ab['answer_us_per_img']['plain']:.1f} vs {ab['answer_us_per_img']['calibrated']:.1f} "
        "us/img"
    )
    ratios: dict[int, list[float]] = {c: [] for c in args.concurrency}
    for r in range(args.repeat):
        print(f"round {r + 1}")
        res = {
            k: run_server(k, work / "bentoml", tag, common, uploads, args)
            for k, tag in tags.items()
        }
        for i, c in enumerate(args.concurrency):
            ratios[c].append(
                res["calibrated"]["levels"][i]["req_per_s"] / res["plain"]["levels"][i]["req_per_s"]
            )
    for c, values in ratios.items():
        print(
            f"service throughput calibrated / plain at c={c}: median {np.median(values):.3f} "
            f"[{min(values):.3f}-{max(values):.3f}] over {len(values)} round(s)"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"in_process": ab, "service_ratio": ratios}, indent=2, default=str)
        )


def worker_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each process in the server's tree, keyed by its BentoML worker id (the
    arbiter and other helpers under 'other')."""
    import psutil  # comes with bentoml

    root = psutil.Process(pid)
    out: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            cmd, t = proc.cmdline(), proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        key = f"worker{cmd[cmd.index('--worker-id') + 1]}" if "--worker-id" in cmd else "other"
        out[key] = out.get(key, 0.0) + t.user + t.system
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--upload-size", type=int, default=160)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    ap.add_argument(
        "--threads", type=int, default=None, help="inference threads (server and ceiling)"
    )
    ap.add_argument(
        "--max-latency-ms",
        type=int,
        default=1000,
        help="serving.max_latency_ms for the batching run; BentoML answers 503 when it predicts a "
        "request cannot finish within it, so a slow (shared) CPU needs more than the default 100",
    )
    ap.add_argument(
        "--monitoring", action="store_true", help="keep traffic logging on (default off here)"
    )
    ap.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="extra config overrides for both services, e.g. serving.spin_wait=true",
    )
    ap.add_argument(
        "--no-http-floor",
        dest="http_floor",
        action="store_false",
        help="skip the reference BentoML service that answers without a model",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds (both services + ceiling each); medians are reported",
    )
    ap.add_argument(
        "--calibration",
        action="store_true",
        help="compare the model without and with a calibration (instead of batching)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="rxvision-bench-serving-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")  # before bentoml is imported
    from rxvision.telemetry import disable_telemetry

    disable_telemetry()
    from bentos.store import save_bundle_to_bentoml
    from tests.support.tiny import make_tiny_bundle

    bundle = make_tiny_bundle(
        work / "bundle", backbone=args.backbone, image_size=args.size, num_classes=8, train_steps=0
    )
    uploads = make_uploads(64, args.upload_size)
    common = [
        "serving.max_in_flight=1024",
        f"serving.max_latency_ms={args.max_latency_ms}",
        f"serving.monitoring={'true' if args.monitoring else 'false'}",
    ]
    if args.threads:
        common.append(f"serving.threads={args.threads}")
    common += args.override
    if args.calibration:
        print(f"{args.backbone} @{args.size}px, calibration cost, cores={os.cpu_count()}")
        return calibration_cost(args, work, bundle, uploads, common)
    tag = str(save_bundle_to_bentoml(bundle).tag)

    print(
        f"{args.backbone} @{args.size}px, uploads {args.upload_size}px JPEG, {args.duration:.0f} "
        "s per level, "
        f"cores={os.cpu_count()}, {args.repeat} round(s)"
    )
    rounds = []
    for r in range(args.repeat):
        print(f"round {r + 1}")
        rounds.append(
            {
                "batching": run_server("batching", work / "bentoml", tag, common, uploads, args),
                "no_batching": run_server(
                    "no_batching",
                    work / "bentoml",
                    tag,
                    [*common, "serving.batching=false"],
                    uploads,
                    args,
                ),
                "ceiling": ceiling(
                    bundle, uploads, [1, 8, 16, 32], min(args.duration, 8.0), args.threads
                ),
            }
        )
        if args.http_floor:
            floor_args = argparse.Namespace(**{**vars(args), "concurrency": [32]})
            rounds[-1]["http_floor"] = run_server(
                "http_floor",
                work / "bentoml",
                tag,
                [],
                uploads,
                floor_args,
                target="benchmarks.http_floor_service:HttpFloor",
            )
        ceil = rounds[-1]["ceiling"]
        print(
            f"  ceiling (in-process decode+preprocess+predict): {ceil['img_per_s']:.1f} img/s at "
            f"batch {ceil['best_batch']} "
            f"({', '.join(f'b{b}: {v:.0f}' for b, v in ceil['img_per_s_by_batch'].items())})"
        )
    summary = summarize(rounds, args.concurrency)
    print(f"\nmedian over {args.repeat} round(s) [min-max]; ratios are to the same round's ceiling")
    print("req/s (x ceiling)               " + "".join(f"c={c:<22}" for c in args.concurrency))
    for key in ("batching", "no_batching"):
        print(
            f"{key:<32}"
            + "".join(
                f"{m['req_per_s']:6.1f} ({m['x_ceiling']:.2f} "
                f"[{m['x_ceiling_min']:.2f}-{m['x_ceiling_max']:.2f}]) "
                for m in summary[key]
            )
        )
    print(
        "batching / no batching          "
        + "".join(
            f"{m['median']:.2f} [{m['min']:.2f}-{m['max']:.2f}]      "
            for m in summary["batching_vs_none"]
        )
    )
    cpu = summary["cpu_bound"]
    print(
        f"CPU per answered request at {cpu['concurrency']} clients (median): server "
        f"{cpu['server_ms']:.1f} ms + client "
        f"{cpu['client_ms']:.1f} ms. With {os.cpu_count()} cores fully used the service cannot "
        f"pass {cpu['req_per_s']:.0f} req/s "
        f"({cpu['x_ceiling']:.2f}x the ceiling)"
    )
    if args.http_floor:
        floor = [rd["http_floor"]["levels"][0] for rd in rounds]
        print(
            f"HTTP floor (BentoML service answering a constant, 1 worker, 32 clients): "
            f"{np.median([f['req_per_s'] for f in floor]):.0f} req/s, server "
            f"{np.median([f['server_cpu_ms_per_req'] for f in floor]):.1f} ms CPU per request"
        )
    print(
        f"time from `bentoml serve` to ready: median {summary['startup_s']['median']:.1f} s, "
        f"max {summary['startup_s']['max']:.1f} s over {len(summary['startup_s']['all'])} starts"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rounds": rounds, "summary": summary}, indent=2, default=str)
        )


def summarize(rounds: list[dict], concurrency: list[int]) -> dict:
    """Medians and ranges over rounds; each ratio is taken within its own round."""

    def stats(values: list[float]) -> dict:
        return {
            "median": float(np.median(values)),
            "min": float(min(values)),
            "max": float(max(values)),
        }

    out: dict = {}
    for key in ("batching", "no_batching"):
        out[key] = []
        for i, c in enumerate(concurrency):
            rps = [rd[key]["levels"][i]["req_per_s"] for rd in rounds]
            x = stats(
                [rd[key]["levels"][i]["req_per_s"] / rd["ceiling"]["img_per_s"] for rd in rounds]
            )
            out[key].append(
                {
                    "concurrency": c,
                    "req_per_s": float(np.median(rps)),
                    "x_ceiling": x["median"],
                    "x_ceiling_min": x["min"],
                    "x_ceiling_max": x["max"],
                }
            )
    out["batching_vs_none"] = [
        {
            "concurrency": c,
            **stats(
                [
                    rd["batching"]["levels"][i]["req_per_s"]
                    / max(rd["no_batching"]["levels"][i]["req_per_s"], 1e-9)
                    for rd in rounds
                ]
            ),
        }
        for i, c in enumerate(concurrency)
    ]
    # what the measured CPU cost per request allows on this machine's cores
    i = concurrency.index(32) if 32 in concurrency else len(concurrency) - 1
    server_ms = float(
        np.median([rd["batching"]["levels"][i]["server_cpu_ms_per_req"] for rd in rounds])
    )
    client_ms = float(
        np.median([rd["batching"]["levels"][i]["client_cpu_ms_per_req"] for rd in rounds])
    )
    bound = (os.cpu_count() or 1) * 1000 / (server_ms + client_ms)
    out["cpu_bound"] = {
        "concurrency": concurrency[i],
        "server_ms": server_ms,
        "client_ms": client_ms,
        "req_per_s": bound,
        "x_ceiling": float(np.median([bound / rd["ceiling"]["img_per_s"] for rd in rounds])),
    }
    starts = [rd[k]["startup_s"] for rd in rounds for k in ("batching", "no_batching")]
    out["startup_s"] = {**stats(starts), "all": starts}
    return out


if __name__ == "__main__":
    main()
