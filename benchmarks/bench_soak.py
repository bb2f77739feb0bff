"""Soak: the real service under closed-loop load for minutes; answers by status code, p50/p99
per interval, and the resident memory (RSS) of the service's process tree over time.

    python benchmarks/bench_soak.py [--minutes 10] [--clients 32] [--interval 30] [--bad-share 0.05]

Goal: no answer but 2xx and 503 to well-formed uploads, the deliberate bad uploads (a share of
junk bytes) answered 4xx, and RSS growth < 5% from the end of the first interval (the
reference: warmed up, same process, same load) to the end. Random weights are fine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def tree_rss_mb(pid: int) -> float:
    import psutil  # comes with bentoml

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


async def soak(url: str, pid: int, uploads: list[bytes], args: argparse.Namespace) -> list[dict]:
    """Closed loop: each client posts its next upload when the previous answer arrives; every
    ``bad_share``-th upload is junk. One row per interval."""
    import aiohttp

    rows: list[dict] = []
    current: dict = {"codes": {}, "bad_codes": {}, "ms": []}
    connector = aiohttp.TCPConnector(limit=args.clients)
    bad_every = round(1 / args.bad_share) if args.bad_share > 0 else 0
    end = time.perf_counter() + args.minutes * 60
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def client(i: int) -> None:
            k = i
            while time.perf_counter() < end:
                bad = bool(bad_every) and k % bad_every == 0
                form = aiohttp.FormData()
                form.add_field(
                    "image",
                    b"junk bytes" if bad else uploads[k % len(uploads)],
                    filename="p.jpg",
                    content_type="image/jpeg",
                )
                k += args.clients
                start = time.perf_counter()
                try:
                    async with session.post(f"{url}/classify", data=form) as resp:
                        await resp.read()
                        status = resp.status
                except aiohttp.ClientError:
                    status = 0  # connection error: counted, never hidden
                bucket = current["bad_codes"] if bad else current["codes"]
                bucket[status] = bucket.get(status, 0) + 1
                if not bad and status == 200:
                    current["ms"].append(1000 * (time.perf_counter() - start))

        async def sampler() -> None:
            nonlocal current
            t0 = time.perf_counter()
            while time.perf_counter() < end:
                await asyncio.sleep(min(args.interval, max(0.0, end - time.perf_counter())))
                done, current = current, {"codes": {}, "bad_codes": {}, "ms": []}
                ms = np.array(done["ms"]) if done["ms"] else np.array([np.nan])
                row = {
                    "t_s": round(time.perf_counter() - t0, 1),
                    "rss_mb": round(await asyncio.to_thread(tree_rss_mb, pid), 1),
                    "codes": done["codes"],
                    "bad_codes": done["bad_codes"],
                    "ok_per_s": len(done["ms"]) / args.interval,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                }
                rows.append(row)
                print(
                    f"  t={row['t_s']:6.0f} s  RSS {row['rss_mb']:7.1f} MB  "
                    f"{row['ok_per_s']:6.1f} ok/s  "
                    f"p50 {row['p50_ms']:6.1f}  p99 {row['p99_ms']:7.1f} ms  codes {row['codes']}  "
                    f"bad uploads {row['bad_codes']}",
                    flush=True,
                )

        await asyncio.gather(sampler(), *(client(i) for i in range(args.clients)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--interval", type=float, default=30.0, help="seconds per reported row")
    ap.add_argument(
        "--bad-share", type=float, default=0.05, help="share of junk uploads (answered 415)"
    )
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--max-latency-ms", type=int, default=1000)
    ap.add_argument(
        "--override", nargs="*", default=[], help="extra config overrides, e.g. serving.workers=1"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rxvision-bench-soak-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")  # before bentoml is imported
    from rxvision.telemetry import disable_telemetry

    disable_telemetry()
    from benchmarks.bench_serving import make_uploads
    from bentos.store import save_bundle_to_bentoml
    from tests.support.launch import serve
    from tests.support.tiny import make_tiny_bundle

    bundle = make_tiny_bundle(
        work / "bundle", backbone=args.backbone, image_size=args.size, num_classes=8, train_steps=0
    )
    tag = str(save_bundle_to_bentoml(bundle).tag)
    uploads = make_uploads(64, 160)
    overrides = [
        f"serving.max_latency_ms={args.max_latency_ms}",
        f"serving.log_dir={work / 'traffic'}",
        *args.override,
    ]
    print(
        f"soak: {args.minutes:g} min, {args.clients} closed-loop clients, {args.backbone} "
        f"@{args.size}px, "
        f"{args.bad_share:.0%} junk uploads, cores={os.cpu_count()}, traffic logging on"
    )
    with serve(work / "bentoml", work / "serve.log", overrides=overrides, model_tag=tag) as server:
        rows = asyncio.run(soak(server.url, server.process.pid, uploads, args))
    codes: dict[int, int] = {}
    bad_codes: dict[int, int] = {}
    for row in rows:
        for k, v in row["codes"].items():
            codes[k] = codes.get(k, 0) + v
        for k, v in row["bad_codes"].items():
            bad_codes[k] = bad_codes.get(k, 0) + v
    reference = rows[0]["rss_mb"]
    growth = (rows[-1]["rss_mb"] - reference) / reference
    unexpected = {k: v for k, v in codes.items() if not (200 <= k < 300 or k == 503)}
    bad_5xx = {k: v for k, v in bad_codes.items() if k >= 500 or k == 0}
    print(
        f"\nanswers to good uploads by status: {dict(sorted(codes.items()))}; to junk uploads: "
        f"{dict(sorted(bad_codes.items()))}"
    )
    print(
        f"p50 {np.median([r['p50_ms'] for r in rows]):.1f} ms, p99 (worst interval) "
        f"{max(r['p99_ms'] for r in rows):.1f} ms; RSS {reference:.0f} MB after the first "
        "interval -> "
        f"{rows[-1]['rss_mb']:.0f} MB at the end ({growth:+.1%}; peak "
        f"{max(r['rss_mb'] for r in rows):.0f} MB)"
    )
    ok = not unexpected and not bad_5xx and growth < 0.05
    print(
        "goal (only 2xx/503 to good uploads, no 5xx to junk, RSS growth < 5%): "
        + ("met" if ok else "NOT met")
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": rows, "codes": codes, "bad_codes": bad_codes, "rss_growth": growth},
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
