"""Deployment steps: export the production bundle (parity-checked, profiled), put it into the
BentoML model store with lineage labels, build the Bento, check Docker for containerizing, and
deploy it with ZenML's BentoML model deployer (through the service subclass below)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from bentoml._internal.bento import bento as bento_module
from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from rxvision.data.split import DatasetSplits
from rxvision.names import STAGE_KEY, VERSION_NAME_KEY, VERSION_NUMBER_KEY, ZENML_MODEL_KEY
from steps.common import (
    BENTO,
    BENTOML_MODEL,
    CONTAINER,
    DEPLOYED_SERVICE,
    EXPORT_DIR,
    EXPORT_PROFILE,
    EXPORT_REPORT,
    MODEL_NAME,
    scalar_metrics,
    to_config,
)

logger = get_logger(__name__)


@step(enable_cache=False)
def export_model(
    model_bundle: Path, splits: DatasetSplits, config: dict[str, Any]
) -> tuple[
    Annotated[Path, EXPORT_DIR],
    Annotated[dict[str, Any], EXPORT_REPORT],
    Annotated[pd.DataFrame, EXPORT_PROFILE],
]:
    """ONNX/TorchScript/int8 with parity on the version's own test images, and a latency
    profile (a table in the dashboard and model-version metadata)."""
    from rxvision import export
    from rxvision.models import load_bundle
    from rxvision.serving import ImageLimits, prepare

    cfg = to_config(config)
    loaded = load_bundle(Path(model_bundle), verify=True)
    test = splits.test[: cfg.export.parity_images]
    images = prepare(
        [s.path.read_bytes() for s in test],
        loaded.info.normalization_obj(),
        ImageLimits.from_config(cfg.serving),
    )
    labels = [splits.classes.index(s.label) for s in test]
    out = Path(tempfile.mkdtemp(prefix="rxvision-export-"))
    result = export.export_model(
        loaded.model, out, cfg.export, loaded.info.normalization["image_size"], images, labels
    )
    report = result.to_dict()
    log_metadata(
        {
            "export": {
                "parity": {k: scalar_metrics(v) for k, v in report["parity"].items()},
                "int8_accuracy_change": report["int8_accuracy_change"],
                "unavailable": report["unavailable"],
                "passed": report["passed"],
            },
            "latency_profile": {
                f"{s['format']}_b{s['batch_size']}": scalar_metrics(s) for s in report["profile"]
            },
        },
        infer_model=True,
    )
    return out, report, pd.DataFrame(report["profile"])


@step(enable_cache=False)
def save_to_bentoml(
    model_bundle: Path, exported_model: Path, embedding_projector: str, config: dict[str, Any]
) -> Annotated[str, BENTOML_MODEL]:
    """The bundle + its ONNX + drift projector into the BentoML store, labelled with lineage,
    with the model deployed so far as the fallback and the resolved serving/monitoring config."""
    from bentos.store import current_model, save_bundle_to_bentoml
    from rxvision.evaluation.metrics import top_k_keys
    from rxvision.models import read_bundle_info
    from rxvision.models.bundle import ONNX_FILE

    context = get_step_context()
    mv = context.model
    info = read_bundle_info(Path(model_bundle))
    metadata = mv.run_metadata if hasattr(mv, "run_metadata") else {}
    mlflow = metadata.get("mlflow") or {}
    projector = None
    if embedding_projector:
        projector = Path(tempfile.mkdtemp()) / "projector.json"
        projector.write_text(embedding_projector)
    labels = {
        ZENML_MODEL_KEY: MODEL_NAME,
        VERSION_NUMBER_KEY: str(mv.number),
        VERSION_NAME_KEY: str(mv.version),
        STAGE_KEY: str(mv.stage or "none"),
        "mlflow_run_id": (mlflow.get("run_id") if isinstance(mlflow, dict) else "") or "",
        "metrics": json.dumps(
            {
                k: round(v, 4)
                for k, v in scalar_metrics(info.metrics).items()
                if k in ("accuracy", "macro_f1", "ece") or k in top_k_keys(info.metrics)
            }
        ),
        "classes": ",".join(info.classes),
        "preprocessing": json.dumps(info.normalization),
        "sha256": info.sha256,
    }
    previous = current_model()
    if previous is not None and previous[1] == str(mv.number):
        previous = None  # a redeploy of the same version is no fallback
    cfg = to_config(config)
    model = save_bundle_to_bentoml(
        Path(model_bundle),
        labels=labels,
        onnx_file=Path(exported_model) / ONNX_FILE,
        projector_file=projector,
        metadata={"mlflow": mlflow},
        fallback=previous[0] if previous else None,
        fallback_version=previous[1] if previous else None,
        service_config={
            "serving": cfg.serving.model_dump(mode="json"),
            "monitoring": cfg.monitoring.model_dump(mode="json"),
        },
    )
    log_metadata(
        {
            "bentoml_model": str(model.tag),
            "fallback_model_version": previous[1] if previous else None,
        },
        infer_model=True,
    )
    return str(model.tag)


@step(enable_cache=False)
def build_bento(
    bentoml_model_tag: str, model_bundle: Path, containerize: bool
) -> tuple[Annotated[bento_module.Bento, BENTO], Annotated[dict[str, Any], CONTAINER]]:
    """`bentoml build` of bentos/bentofile.yaml; with ``containerize``, `bentoml containerize`
    where Docker exists, else a clear 'skipped: why' with the generated Dockerfile."""
    import os

    from zenml.integrations.bentoml.constants import DEFAULT_BENTO_FILENAME

    from bentos import store

    # ZenML's BentoML deployer reads model_uri/bento_uri from the Bento's labels
    bento_uri = os.path.join(
        get_step_context().get_output_artifact_uri(BENTO), DEFAULT_BENTO_FILENAME
    )
    labels = {
        "bentoml_model": bentoml_model_tag,
        "model_uri": str(model_bundle),
        "bento_uri": bento_uri,
    }
    bento = store.build_bento(bentoml_model_tag, labels=labels)
    container: dict[str, Any] = {
        "requested": containerize,
        "image": None,
        "dockerfile": str(store.dockerfile_path(bento)),
    }
    if containerize:
        ok, why = store.docker_status()
        if ok:
            import bentoml

            bentoml.container.build(str(bento.tag), backend="docker")
            container["image"] = str(bento.tag)
        else:
            container["skipped"] = why
            logger.warning(
                "--containerize skipped: %s. The Bento's Dockerfile is %s",
                why,
                container["dockerfile"],
            )
    log_metadata({"bento": str(bento.tag), "container": container}, infer_model=True)
    return bento, container


# ----------------------------------------------------------------------------- deploy
from zenml.services.service import BaseService

# re-exported: deployments made before the move name the class by this module's path
from steps.bentoml_local import RxVisionBentoMLLocalService, deploy_with_service_class  # noqa: F401


@step(enable_cache=False)
def deploy_bento(
    bento: bento_module.Bento, port: int, working_dir: str, timeout: int, host: str = "127.0.0.1"
) -> Annotated[BaseService, DEPLOYED_SERVICE]:
    """ZenML's BentoML model deployer (local `bentoml serve` daemon, listed by `zenml
    model-deployer models list`), with the service class of steps/bentoml_local.py; listens on
    ``host`` (serving.host: 127.0.0.1 unless the config opens it)."""
    import os

    from zenml.integrations.bentoml.services.bentoml_local_deployment import (
        BentoMLLocalDeploymentConfig,
    )

    context = get_step_context()
    config = BentoMLLocalDeploymentConfig(
        model_name=MODEL_NAME,
        model_version=str(context.model.version),
        bento_tag=str(bento.tag),
        model_uri=bento.info.labels["model_uri"],
        bento_uri=bento.info.labels["bento_uri"],
        apis=["classify", "classify_batch", "model_info"],
        port=port,
        host=host,
        working_dir=working_dir,
        pipeline_name=context.pipeline.name,
        pipeline_step_name=context.step_run.name,
    )  # workers: the service sets its own (serving.workers), which serve_http uses
    # the daemon imports this module to rebuild the service: keep the repository importable
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [working_dir, os.environ.get("PYTHONPATH")])
    )
    service = deploy_with_service_class(config, timeout)
    if not service.is_running:
        raise RuntimeError(f"the BentoML service did not start; see {service.status.log_file}")
    logger.info("BentoML service running at %s", service.prediction_url)
    log_metadata(
        {"deployment": {"url": service.prediction_url, "service_uuid": str(service.uuid)}},
        infer_model=True,
    )
    return service
