#!/usr/bin/env python
"""RxVision's one command line: run a pipeline on the active ZenML stack.

    python run.py --pipeline training                      # demo profile, local stack
    python run.py --pipeline training --set training.epochs=2 --fail-on-gate
    python run.py --pipeline training --config configs/k8s-gpu.yaml --stack rxvision-k8s-gpu
    python run.py --dashboard                              # ZenML dashboard on the same state
    eval "$(python run.py --env)"                          # point zenml/mlflow/bentoml CLIs here
    python run.py --promote 3 --to production [--force --reason "..."]

The first run sets itself up (idempotently): all state in RXVISION_HOME (default `.rxvision/`
here), the ZenML repository and the `rxvision-local` stack. A user error (wrong pipeline name,
config file or key, bad data, no production model) is one line on stderr and exit code 2;
`--debug` shows the traceback too.

Contract for pipeline modules (for the engineers who add a pipeline)
--------------------------------------------------------------------
``--pipeline NAME`` imports ``pipelines.<module>`` lazily (see ``PIPELINES``) and calls

    main(cfg: rxvision.config.RxVisionConfig, args: argparse.Namespace) -> int

after the environment is configured and the stack is active. ``cfg`` is the validated config
(profile + --config file + --set overrides; the data cache defaults to $RXVISION_HOME/cache).
``args`` carries every flag below under its dest name (``args.no_cache``, ``args.fail_on_gate``,
``args.model_version``, ``args.containerize``, ``args.input``, ``args.window``,
``args.fail_on_drift``, ``args.retrain_on_drift``, ``args.best_config``, ``args.debug``),
plus ``args.state`` (a ``stacks.setup.StatePaths``) and ``args.zenml_options`` (a dict for
``pipelines.with_run_options``: the ZenML options of the --config file, i.e. everything but
``parameters.config``, with ``enable_cache=False`` when --no-cache). The return value is the
process exit code; raise ``RxVisionError`` for user errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from rxvision.errors import RxVisionError, find_user_error

PIPELINES = {
    "training": "training",
    "deployment": "deployment",
    "monitoring": "monitoring",
    "batch-inference": "batch_inference",
    "tuning": "tuning",
}
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The flags of every pipeline; each pipeline reads the ones it needs."""
    p = argparse.ArgumentParser(
        prog="run.py",
        description="Run an RxVision pipeline on the active ZenML stack.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="State lives in $RXVISION_HOME (default .rxvision/ in the project root).",
    )
    p.add_argument(
        "--pipeline",
        default="training",
        metavar="NAME",
        help=f"which pipeline to run: {' | '.join(PIPELINES)} (default: training)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a ZenML run config (see configs/): `parameters: {config: ...}` holds "
        "RxVision sections on top of the profile, the other keys are ZenML run "
        "options; `zenml pipeline run ... -c FILE` reads the same file",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="base profile: demo (offline, CPU, synthetic pills; default) or full "
        "(resnet50 @224 on real data, GPU); default: the run config's "
        "`profile:`, else demo",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set training.epochs=3 (repeatable)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="re-run every step instead of reusing cached data steps",
    )
    p.add_argument(
        "--stack",
        metavar="NAME",
        help="run on this registered ZenML stack (this process only; default: the "
        "active stack, rxvision-local on first use)",
    )
    p.add_argument("--debug", action="store_true", help="debug logs and full tracebacks")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="start the local ZenML dashboard on this state folder and exit",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=8237,
        metavar="PORT",
        help="with --dashboard: the port on 127.0.0.1 (default: 8237)",
    )
    p.add_argument(
        "--env",
        action="store_true",
        help="print shell exports that point the zenml, mlflow and bentoml commands "
        'at this state folder: eval "$(python run.py --env)"',
    )
    g = p.add_argument_group("promotion")
    g.add_argument(
        "--promote",
        metavar="VERSION",
        help="move this model version to the stage given by --to, under the gate's "
        "rules (re-scored against production on the same test split)",
    )
    g.add_argument(
        "--to",
        dest="to_stage",
        choices=("production", "staging", "archived"),
        help="target stage for --promote",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="with --promote: override a failed gate (needs --reason)",
    )
    g.add_argument("--reason", help="with --promote: why; recorded in the stage history")
    g = p.add_argument_group("training")
    g.add_argument(
        "--fail-on-gate",
        action="store_true",
        help="exit non-zero when the quality gate rejects the model",
    )
    g.add_argument(
        "--no-resume",
        action="store_true",
        help="start over instead of resuming an interrupted run of the same config",
    )
    g = p.add_argument_group("deployment / batch-inference")
    g.add_argument(
        "--model-version",
        metavar="VERSION",
        help="ZenML model version (number, name or stage) instead of production",
    )
    g.add_argument(
        "--containerize",
        action="store_true",
        help="also build a container image with `bentoml containerize` (needs Docker)",
    )
    g.add_argument(
        "--input",
        type=Path,
        metavar="DIR_OR_CSV",
        help="batch-inference input: an image folder or a CSV manifest",
    )
    g = p.add_argument_group("tuning")
    g.add_argument(
        "--best-config",
        type=Path,
        metavar="FILE",
        help="where to write the best trial's run config (default: "
        "$RXVISION_HOME/tuning/<study>/best.yaml)",
    )
    g = p.add_argument_group("monitoring")
    g.add_argument(
        "--window",
        metavar="DURATION",
        help="traffic window to analyse, e.g. 24h (default: monitoring.window)",
    )
    g.add_argument("--fail-on-drift", action="store_true", help="exit non-zero on drift")
    g.add_argument(
        "--retrain-on-drift",
        action="store_true",
        help="start the training pipeline when drift is found",
    )
    return p


def resolve_pipeline(name: str) -> Any:
    """Import ``pipelines.<module>`` for a pipeline name; unknown or missing is a user error."""
    if name not in PIPELINES:
        raise RxVisionError(f"unknown pipeline '{name}'", f"choose one of: {', '.join(PIPELINES)}")
    module_name = f"pipelines.{PIPELINES[name]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise RxVisionError(f"pipeline '{name}' is not available in this checkout") from None
    if not hasattr(module, "main"):
        raise RxVisionError(f"{module_name} has no main(cfg, args) entry point")
    return module


def _run(args: argparse.Namespace) -> int:
    from stacks.setup import configure_environment, dashboard_command, ensure_local_stack

    paths = configure_environment()
    args.state = paths
    from pipelines import metadata_cache

    metadata_cache.install()  # ZenML's source resolution re-reads every package's metadata
    import zenml  # noqa: F401  (sets up logging to the console; see main)

    if not args.debug:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.addFilter(_no_traceback_for_user_errors)
    if args.dashboard:
        return _dashboard(paths, args.dashboard_port, dashboard_command(paths, args.dashboard_port))
    if args.env:
        return _print_env(paths)
    if args.promote is None and (args.to_stage or args.force or args.reason):
        raise RxVisionError(
            "--to, --force and --reason go with --promote VERSION",
            "e.g. python run.py --promote 3 --to production",
        )
    if args.promote is None and args.pipeline not in PIPELINES:
        resolve_pipeline(args.pipeline)  # raises the one-line error

    from pipelines import read_run_config
    from rxvision.config import load_config

    file_profile, rx_sections, zenml_options = read_run_config(args.config)
    overrides = [*args.overrides, *(["training.resume=false"] if args.no_resume else [])]
    cfg = load_config(args.profile or file_profile or "demo", rx_sections, overrides)
    if args.promote is not None:
        from pipelines.promotion import main as promote

        ensure_local_stack(paths)
        return int(promote(cfg, args) or 0)
    if args.no_cache:
        zenml_options["enable_cache"] = False
    args.zenml_options = zenml_options
    module = resolve_pipeline(args.pipeline)

    ensure_local_stack(paths)
    if args.stack:
        from stacks.setup import use_stack

        use_stack(args.stack)
    return int(module.main(cfg, args) or 0)


def _no_traceback_for_user_errors(record: logging.LogRecord) -> bool:
    """Console filter: ZenML logs a failed step with its traceback; for a user error, which
    main() prints as one line, keep ZenML's notice and drop the traceback (--debug keeps it)."""
    if record.exc_info and find_user_error(record.exc_info[1]) is not None:
        record.exc_info = None
        record.exc_text = None
    return True


def _print_env(paths: Any) -> int:
    """`export NAME=value` lines for the shell (eval them); nothing else goes to stdout."""
    import shlex

    from stacks.setup import cli_environment, ensure_local_stack

    # ZenML logs set-up messages to stdout, which the shell would evaluate: send them to stderr
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        ensure_local_stack(paths)
        env = cli_environment(paths)
        sys.stdout.flush()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _dashboard(paths: Any, port: int, command: str) -> int:
    """Start ZenML's local dashboard on this state folder (runs in the background)."""
    import subprocess

    from stacks.setup import ensure_local_stack

    ensure_local_stack(paths)
    logging.getLogger("rxvision").info("starting the dashboard: %s", command)
    zenml_cli = Path(sys.executable).with_name("zenml")
    if not zenml_cli.exists():
        raise RxVisionError(
            "the `zenml` command is not installed next to this Python",
            "pip install 'zenml[server,local]'",
        )
    rc = subprocess.call([str(zenml_cli), "login", "--local", "--port", str(port)])
    if rc == 0:
        stop = command.replace(f"login --local --port {port}", "logout --local")
        print(f"dashboard: http://127.0.0.1:{port}  (stop it: {stop})")
    return rc


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the pipeline; user errors are one line, tracebacks only with --debug."""
    args = build_parser().parse_args(argv)
    # ZenML installs its console handler on the root logger when imported; our loggers
    # propagate to it, so adding a handler here would print every line twice.
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "DEBUG" if args.debug else "INFO")
    logging.getLogger().setLevel(logging.DEBUG if args.debug else logging.INFO)
    if not args.debug:
        # ZenML, MLflow and friends are chatty at INFO; keep the run readable.
        for name in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _run(args)
    except Exception as exc:  # a step's RxVisionError may arrive wrapped by the orchestrator
        err = find_user_error(exc)
        if err is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
