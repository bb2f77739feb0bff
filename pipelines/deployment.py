"""The deployment pipeline: the production model version -> export (parity-checked, profiled)
-> BentoML model store with lineage labels -> Bento -> ZenML's BentoML model deployer (local
`bentoml serve` daemon on serving.host, 127.0.0.1 by default; see steps/bentoml_local.py for
why not its stock step) -> the URL. On a stack without that deployer but with an image
builder (Kubernetes): the Bento's image, built and pushed by the stack, and its manifests
(steps/k8s_deploy.py).

    python run.py --pipeline deployment [--model-version V] [--containerize]
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from zenml import Model, get_pipeline_context, pipeline
from zenml.enums import ExecutionMode

from pipelines import RunConfig
from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from steps.common import (
    BENTO,
    BENTOML_MODEL,
    CONTAINER,
    DEPLOYED_SERVICE,
    EMBEDDING_PROJECTOR,
    EXPORT_REPORT,
    MODEL_BUNDLE,
    MODEL_NAME,
    SPLITS,
    config_param,
)
from steps.deployment import build_bento, deploy_bento, export_model, save_to_bentoml
from steps.k8s_deploy import KUBERNETES_TARGET, deploy_to_kubernetes, deployment_target
from steps.step_output import OUTPUT_HOOKS

logger = logging.getLogger(__name__)
PIPELINE_NAME = "rxvision_deployment"
PRODUCTION = "production"  # ZenML's ModelStages.PRODUCTION value
REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_TIMEOUT_S = 300  # a contended 2-core CPU needs about a minute to load and warm up


# FAIL_FAST: a step's user error reaches run.py as itself (one line), as in training
@pipeline(
    name=PIPELINE_NAME,
    enable_cache=False,
    model=Model(name=MODEL_NAME, version=PRODUCTION),
    execution_mode=ExecutionMode.FAIL_FAST,
    **OUTPUT_HOOKS,
)
def deployment_pipeline(config: RunConfig, containerize: bool = False) -> None:
    """The pipeline's model version (production unless the run config's ``model:`` names
    another) -> its bundle, splits and projector -> export -> Bento -> deploy. ZenML resolves
    the stage when the run starts; the artifacts are the version's (lineage shows them)."""
    model = get_pipeline_context().model
    bundle = model.get_artifact(MODEL_BUNDLE)
    splits = model.get_artifact(SPLITS)
    projector = model.get_artifact(EMBEDDING_PROJECTOR)
    params = config_param(config)
    exported, _report, _profile = export_model(bundle, splits, params)
    tag = save_to_bentoml(bundle, exported, projector, params)
    bento, _container = build_bento(tag, bundle, containerize)
    if deployment_target() == KUBERNETES_TARGET:  # the stack's image builder, no deployer
        deploy_to_kubernetes(bento, params)
        return
    deploy_bento(
        bento,
        port=config.serving.port,
        working_dir=str(REPO_ROOT),
        timeout=DEPLOY_TIMEOUT_S,
        host=config.serving.host,
    )


def resolve_model_version(model_version: str | None = None) -> Any:
    """The production version of the model, or the one named (number, name or stage)."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    wanted: Any = model_version or ModelStages.PRODUCTION
    if isinstance(wanted, str) and wanted.isdigit():
        wanted = int(wanted)
    try:
        return Client().get_model_version(MODEL_NAME, wanted)
    except KeyError:
        raise RxVisionError(
            f"no {'production' if model_version is None else repr(model_version)} version "
            f"of the model '{MODEL_NAME}'",
            "run `python run.py --pipeline training` first "
            "(a model that passes the gate becomes production), "
            "or name an existing version with --model-version",
        ) from None


def model_for(model_version: str | None) -> Model:
    """The ZenML model the pipeline runs with: its production version, or the version named
    (number, name or stage), resolved by ZenML when the run starts."""
    wanted = model_version or PRODUCTION
    return Model(name=MODEL_NAME, version=int(wanted) if wanted.isdigit() else wanted)


def _service_env(cfg: RxVisionConfig, args: argparse.Namespace) -> None:
    """The deployed service reads the serving/monitoring sections this run stores with the
    BentoML model (so --config files and --set overrides both reach it); the environment of
    the daemon started from this process names only the profile."""
    os.environ["RXVISION_PROFILE"] = cfg.profile
    os.environ.pop("RXVISION_OVERRIDES", None)
    os.environ.pop(
        "RXVISION_MODEL_TAG", None
    )  # the service takes the model this run saves (latest)


def run_deployment(
    cfg: RxVisionConfig,
    model_version: str | None = None,
    containerize: bool = False,
    zenml_options: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run the pipeline on the active stack; returns (pipeline run, summary dict)."""
    from zenml.client import Client

    from pipelines import call_pipeline, with_run_options

    resolve_model_version(model_version)  # none yet: a one-line error before anything runs
    pipe = with_run_options(deployment_pipeline, zenml_options)
    if model_version is not None:
        pipe = pipe.with_options(model=model_for(model_version))
    run = call_pipeline(pipe, config=cfg, containerize=containerize)
    run = Client().get_pipeline_run(run.id)
    mv = run.model_version
    report = run.steps["export_model"].outputs[EXPORT_REPORT][0].load()
    container = run.steps["build_bento"].outputs[CONTAINER][0].load()
    bento_tag = run.steps["build_bento"].outputs[BENTO][0].load().tag
    summary = {
        "model_version": mv.number,
        "stage": str(mv.stage),
        "bento": str(bento_tag),
        "bentoml_model": run.steps["save_to_bentoml"].outputs[BENTOML_MODEL][0].load(),
        "export": report,
        "container": container,
    }
    if "deploy_bento" in run.steps:
        service = run.steps["deploy_bento"].outputs[DEPLOYED_SERVICE][0].load()
        summary.update(url=service.prediction_url, service_uuid=str(service.uuid))
    else:
        from steps.k8s_deploy import kubernetes_summary

        summary["kubernetes"] = kubernetes_summary(run, cfg)
    return run, summary


def print_summary(run: Any, summary: dict[str, Any]) -> None:
    """One screen: version, parity, fastest format, Bento, URL, container outcome."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_row("run", run.name)
    table.add_row("model", f"{MODEL_NAME} version {summary['model_version']} ({summary['stage']})")
    parity = summary["export"]["parity"]
    table.add_row(
        "parity",
        ", ".join(
            f"{k}: max|diff| {v['max_abs_diff']:.1e}, top-1 {v['top1_agreement']:.2f}"
            for k, v in parity.items()
            if k != "int8"
        ),
    )
    change = summary["export"].get("int8_accuracy_change")
    if change is not None:
        table.add_row("int8", f"accuracy change {change:+.3f}")
    b1 = {
        s["format"]: s["throughput_ips"]
        for s in summary["export"]["profile"]
        if s["batch_size"] == 1
    }
    if b1:
        table.add_row("batch 1", ", ".join(f"{k} {v:.0f} img/s" for k, v in b1.items()))
    for why in summary["export"]["unavailable"].values():
        table.add_row("tensorrt", why)
    table.add_row("bentoml model", summary["bentoml_model"])
    table.add_row("bento", summary["bento"])
    container = summary["container"]
    if container.get("requested"):
        table.add_row(
            "container", container.get("image") or f"[yellow]skipped: {container.get('skipped')}[/]"
        )
    table.add_row("dockerfile", container["dockerfile"])
    if "kubernetes" in summary:
        k8s = summary["kubernetes"]
        table.add_row("image", k8s["image"])
        table.add_row("manifests", k8s["file"])
        table.add_row("applied", ", ".join(k8s["objects"]) if k8s["applied"] else k8s["reason"])
        if not k8s["applied"]:
            table.add_row("apply with", f"[bold]{k8s['command']}[/]")
    else:
        url = f"[bold]{summary['url']}[/]  (POST /classify with a multipart 'image')"
        table.add_row("URL", url)
    Console().print(Panel(table, title="RxVision deployment", expand=False))


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point."""
    _service_env(cfg, args)
    run, summary = run_deployment(
        cfg,
        getattr(args, "model_version", None),
        bool(getattr(args, "containerize", False)),
        getattr(args, "zenml_options", None),
    )
    print_summary(run, summary)
    return 0
