"""How many lines of each step's stored ZenML log are tagged ERROR, on a real training run.

Runs `python run.py --pipeline training` (the demo profile, made smaller with --set) in a
fresh state folder, then reads every step's stored log back from the run's log store (what
the dashboard's Logs tab shows) and prints, per step, ERROR lines / all lines and the
loggers or streams they came from.

    python benchmarks/bench_step_logs.py                  # demo profile, 4 classes x 40 images
    python benchmarks/bench_step_logs.py --show 20        # also print 20 ERROR lines
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = (
    "data.synthetic.num_classes=4",
    "data.synthetic.images_per_class=40",
    "data.image_size=64",
    "training.epochs=2",
    "evaluation.bootstrap_samples=50",
    "gate.min_accuracy=0.0",
    "gate.min_macro_f1=0.0",
    "gate.max_ece=1.0",
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--show", type=int, default=0, help="print this many ERROR lines")
    p.add_argument("--home", type=Path, help="keep the state folder here (default: a temp dir)")
    p.add_argument("--no-run", action="store_true", help="read the last run in --home again")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxvision-logs-") as tmp:
        home = str(args.home or tmp)
        if not args.no_run:
            env = {**os.environ, "RXVISION_HOME": home}
            cmd = [sys.executable, str(ROOT / "run.py"), "--pipeline", "training"]
            for item in (*SMALL, *args.overrides):
                cmd += ["--set", item]
            done = subprocess.run(
                cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                return done.returncode

        from stacks.setup import configure_environment

        configure_environment(home)
        from zenml.client import Client

        from tests.support.step_logs import step_log_lines

        run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
        lines = step_log_lines(run)
        print(f"run {run.name} ({run.status}), stored step logs:")
        print(f"{'step':<20} {'ERROR':>6} {'all':>6}  ERROR lines by source")
        total = errors = 0
        for step, entries in lines.items():
            bad = [e for e in entries if e.level == "ERROR"]
            total, errors = total + len(entries), errors + len(bad)
            sources = Counter(e.name or "?" for e in bad).most_common(4)
            print(f"{step:<20} {len(bad):>6} {len(entries):>6}  {dict(sources) or ''}")
        print(f"{'all steps':<20} {errors:>6} {total:>6}")
        shown = [e for es in lines.values() for e in es if e.level == "ERROR"][: args.show]
        for e in shown:
            print(f"  [{e.step}] {e.name}: {e.message[:160]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
