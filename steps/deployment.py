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
from steps.common import MODEL_NAME, scalar_metrics, to_config

logger = get_logger(__name__)

EXPORT_DIR = "exported_model"
EXPORT_REPORT = "export_report"
EXPORT_PROFILE = "export_profile"
BENTOML_MODEL = "bentoml_model_tag"
BENTO = "bento"
CONTAINER = "container_image"


@step(enable_cache=False)
def export_model_step(
    model_bundle: Path, splits: DatasetSplits, config: dict[str, Any]
) -> tuple[
    Annotated[Path, EXPORT_DIR], Annotated[dict[str, Any], EXPORT_REPORT], Annotated[pd.DataFrame, EXPORT_PROFILE]
]:
    """ONNX/TorchScript/int8 with parity on the version's own test images, and a latency
    profile (a table in the dashboard and model-version metadata)."""
    from rxvision.export import export_model
    from rxvision.models import load_bundle
    from rxvision.serving import ImageLimits, decode_image, preprocess_batch

    cfg = to_config(config)
    loaded = load_bundle(Path(model_bundle), verify=True)
    test = splits.test[: cfg.export.parity_images]
    images = preprocess_batch([decode_image(s.path.read_bytes(), ImageLimits()) for s in test],
                              loaded.info.normalization_obj())
    labels = [splits.classes.index(s.label) for s in test]
    out = Path(tempfile.mkdtemp(prefix="rxvision-export-"))
    result = export_model(loaded.model, out, cfg.export, loaded.info.normalization["image_size"], images, labels)
    report = result.to_dict()
    log_metadata({"export": {"parity": {k: scalar_metrics(v) for k, v in report["parity"].items()},
                             "int8_accuracy_change": report["int8_accuracy_change"],
                             "unavailable": report["unavailable"], "passed": report["passed"]},
                  "latency_profile": {f"{s['format']}_b{s['batch_size']}": scalar_metrics(s) for s in report["profile"]}},
                 infer_model=True)
    return out, report, pd.DataFrame(report["profile"])


@step(enable_cache=False)
def save_to_bentoml_step(
    model_bundle: Path, exported_model: Path, embedding_projector: str, config: dict[str, Any]
) -> Annotated[str, BENTOML_MODEL]:
    """The bundle + its ONNX + drift projector into the BentoML store, labelled with lineage."""
    from bentos.store import save_bundle_to_bentoml
    from rxvision.models import read_bundle_info

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
        "zenml_model": MODEL_NAME, "zenml_model_version": str(mv.number),
        "zenml_model_version_name": str(mv.version), "zenml_model_stage": str(mv.stage or "none"),
        "mlflow_run_id": (mlflow.get("run_id") if isinstance(mlflow, dict) else "") or "",
        "metrics": json.dumps({k: round(v, 4) for k, v in scalar_metrics(info.metrics).items()
                               if k in ("accuracy", "macro_f1", "ece", "top3_accuracy")}),
        "classes": ",".join(info.classes), "preprocessing": json.dumps(info.normalization), "sha256": info.sha256,
    }
    model = save_bundle_to_bentoml(Path(model_bundle), labels=labels, onnx_file=Path(exported_model) / "model.onnx",
                                   projector_file=projector, metadata={"mlflow": mlflow})
    log_metadata({"bentoml_model": str(model.tag)}, infer_model=True)
    return str(model.tag)


@step(enable_cache=False)
def build_bento_step(bentoml_model_tag: str, model_bundle: Path, containerize: bool) -> tuple[
    Annotated[bento_module.Bento, BENTO], Annotated[dict[str, Any], CONTAINER]
]:
    """`bentoml build` of bentos/bentofile.yaml; with ``containerize``, `bentoml containerize`
    where Docker exists, else a clear 'skipped: why' with the generated Dockerfile."""
    import os

    from zenml.integrations.bentoml.constants import DEFAULT_BENTO_FILENAME

    from bentos.store import build_bento, docker_status, dockerfile_path

    # ZenML's BentoML deployer reads model_uri/bento_uri from the Bento's labels
    bento_uri = os.path.join(get_step_context().get_output_artifact_uri(BENTO), DEFAULT_BENTO_FILENAME)
    labels = {"bentoml_model": bentoml_model_tag, "model_uri": str(model_bundle), "bento_uri": bento_uri}
    bento = build_bento(bentoml_model_tag, labels=labels)
    container: dict[str, Any] = {"requested": containerize, "image": None,
                                 "dockerfile": str(dockerfile_path(bento))}
    if containerize:
        ok, why = docker_status()
        if ok:
            import bentoml

            bentoml.container.build(str(bento.tag), backend="docker")
            container["image"] = str(bento.tag)
        else:
            container["skipped"] = why
            logger.warning("--containerize skipped: %s. The Bento's Dockerfile is %s", why, container["dockerfile"])
    log_metadata({"bento": str(bento.tag), "container": container}, infer_model=True)
    return bento, container


# ----------------------------------------------------------------------------- deploy
from zenml.integrations.bentoml.services.bentoml_local_deployment import (
    BentoMLLocalDeploymentConfig,
    BentoMLLocalDeploymentService,
)
from zenml.services.service import BaseService

DEPLOYED_SERVICE = "deployed_service"


class RxVisionBentoMLLocalService(BentoMLLocalDeploymentService):
    """ZenML 0.98's BentoML local service, able to run a BentoML >= 1.2 service.

    Why: its ``run()`` checks ``isinstance(svc, bentoml.Service)`` to detect the *old* (< 1.2)
    API, but in BentoML 1.4 ``bentoml.Service`` is the new class, so every new-style service
    is started with the legacy server and the daemon dies ('Service' has no 'runners').
    Same type descriptor, so ZenML lists and manages it as a BentoML deployment."""

    def run(self) -> None:
        import bentoml
        from _bentoml_impl.server import serve_http

        self.endpoint.prepare_for_start()
        working_dir = self.config.working_dir or "."
        svc = bentoml.load(self.config.bento_tag, working_dir=working_dir)
        svc.inject_config()
        try:
            serve_http(self.config.bento_tag, working_dir=working_dir, host=self.config.host or "127.0.0.1",
                       port=self.config.port, backlog=self.config.backlog)
        except KeyboardInterrupt:
            logger.info("stopping the BentoML service")


@step(enable_cache=False)
def deploy_bento_step(
    bento: bento_module.Bento, port: int, working_dir: str, timeout: int
) -> Annotated[BaseService, DEPLOYED_SERVICE]:
    """ZenML's BentoML model deployer (local `bentoml serve` daemon, listed by `zenml
    model-deployer models list`), with the service class above."""
    import functools
    import os

    from zenml.integrations.bentoml.model_deployers import BentoMLModelDeployer

    deployer = BentoMLModelDeployer.get_active_model_deployer()
    context = get_step_context()
    config = BentoMLLocalDeploymentConfig(
        model_name=MODEL_NAME, model_version=str(context.model.version), bento_tag=str(bento.tag),
        model_uri=bento.info.labels["model_uri"], bento_uri=bento.info.labels["bento_uri"],
        apis=["classify", "classify_batch", "model_info"], port=port, host="127.0.0.1", working_dir=working_dir,
        pipeline_name=context.pipeline.name, pipeline_step_name=context.step_run.name,
    )  # workers: the service sets its own (serving.workers), which serve_http uses
    # the daemon imports this module to rebuild the service: keep the repository importable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [working_dir, os.environ.get("PYTHONPATH")]))

    def create(self, id, timeout, config):
        config.root_runtime_path = self.local_path
        service = RxVisionBentoMLLocalService(uuid=id, config=config)
        service.start(timeout=timeout)
        return service

    deployer._create_new_service = functools.partial(create, deployer)  # only the service class differs
    try:
        service = deployer.deploy_model(config=config, service_type=RxVisionBentoMLLocalService.SERVICE_TYPE,
                                        replace=True, timeout=timeout)
    finally:
        del deployer._create_new_service
    if not service.is_running:
        raise RuntimeError(f"the BentoML service did not start; see {service.status.log_file}")
    logger.info("BentoML service running at %s", service.prediction_url)
    log_metadata({"deployment": {"url": service.prediction_url, "service_uuid": str(service.uuid)}}, infer_model=True)
    return service
