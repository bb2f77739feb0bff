"""Put a model bundle into the BentoML model store, ready for the service: the bundle (sha256
in bundle.json), its ONNX export (sha256 in export.json) and optional drift projector, with
lineage labels. Used by the deployment pipeline, the serving tests and the benchmarks."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import bentoml

from rxvision.models.bundle import read_bundle_info
from rxvision.names import MODEL_NAME, VERSION_NUMBER_KEY
from rxvision.serving import EXPORT_MANIFEST, ONNX_FILE, write_export_manifest

log = logging.getLogger(__name__)

BUNDLE_SUBDIR = "bundle"
# the previous production model (bundle + ONNX), which the service falls back to
FALLBACK_SUBDIR = "fallback"
PROJECTOR_FILE = "projector.json"
# the resolved serving and monitoring config sections the service starts from
SERVICE_CONFIG_FILE = "service_config.json"


def _label_value(value: Any) -> str:
    # BentoML labels are str -> str
    return str(value)[:250]


def save_bundle_to_bentoml(
    bundle: Path,
    name: str = MODEL_NAME,
    labels: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    onnx_file: Path | None = None,
    projector_file: Path | None = None,
    opset: int = 17,
    fallback: Path | None = None,
    fallback_version: str | None = None,
    service_config: dict[str, Any] | None = None,
) -> bentoml.Model:
    """Copy ``bundle`` into a new BentoML model ``name`` (under ``bundle/``), add the ONNX
    export (``onnx_file`` if given, else exported now) with its sha256 manifest, and label it
    with the bundle's sha256, backbone and classes plus ``labels``. ``fallback``: a bundle
    folder with its ONNX (e.g. the previous model's ``bundle/``), copied to ``fallback/``;
    ``service_config``: the serving/monitoring sections the service should start from."""
    bundle = Path(bundle)
    info = read_bundle_info(bundle)
    all_labels = {
        "sha256": info.sha256,
        "backbone": info.backbone,
        "num_classes": info.num_classes,
        **(labels or {}),
    }
    meta = {
        "classes": list(info.classes),
        "metrics": dict(info.metrics),
        "normalization": dict(info.normalization),
        "fingerprint": info.fingerprint,
        **(metadata or {}),
    }
    with bentoml.models.create(
        name,
        labels={k: _label_value(v) for k, v in all_labels.items()},
        metadata=meta,
        module="rxvision",
    ) as model:
        target = Path(model.path) / BUNDLE_SUBDIR
        shutil.copytree(
            bundle, target, ignore=shutil.ignore_patterns(ONNX_FILE, EXPORT_MANIFEST, "*.tmp")
        )
        onnx_path = target / ONNX_FILE
        if onnx_file is not None:
            shutil.copy2(onnx_file, onnx_path)
        else:
            from rxvision.export import export_onnx  # torch: only when there is no ONNX file yet
            from rxvision.models import load_bundle

            loaded = load_bundle(target, verify=True)
            export_onnx(loaded.model, onnx_path, int(info.normalization["image_size"]), opset=opset)
        write_export_manifest(target, onnx_path)
        if projector_file is not None and Path(projector_file).is_file():
            shutil.copy2(projector_file, Path(model.path) / PROJECTOR_FILE)
        if fallback is not None:
            spare = Path(model.path) / FALLBACK_SUBDIR
            shutil.copytree(fallback, spare, ignore=shutil.ignore_patterns("*.tmp"))
            (spare / "fallback.json").write_text(json.dumps({"model_version": fallback_version}))
        if service_config:
            (Path(model.path) / SERVICE_CONFIG_FILE).write_text(
                json.dumps(service_config, indent=2)
            )
    log.info("saved %s into the BentoML model store", model.tag)
    return model


def current_model(name: str = MODEL_NAME) -> tuple[Path, str] | None:
    """The bundle folder and ZenML version of the latest ``name`` in the BentoML store (what
    is deployed now, before a new version is saved): the next deployment's fallback."""
    try:
        model = bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None
    folder = Path(model.path) / BUNDLE_SUBDIR
    if not (folder / ONNX_FILE).is_file():
        return None
    labels = dict(model.info.labels or {})
    return folder, str(labels.get(VERSION_NUMBER_KEY) or model.tag.version)


REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"


def build_bento(model_tag: str, labels: dict[str, Any] | None = None) -> Any:
    """``bentoml build`` of bentos/bentofile.yaml from the repository root, pinned to
    ``model_tag`` (the service reads RXVISION_MODEL_TAG when BentoML imports it to build)."""
    import os

    previous = os.environ.get("RXVISION_MODEL_TAG")
    os.environ["RXVISION_MODEL_TAG"] = str(model_tag)
    try:
        bento = bentoml.bentos.build_bentofile(
            str(BENTOFILE),
            build_ctx=str(REPO_ROOT),
            labels={k: _label_value(v) for k, v in (labels or {}).items()},
        )
    finally:
        if previous is None:
            os.environ.pop("RXVISION_MODEL_TAG", None)
        else:
            os.environ["RXVISION_MODEL_TAG"] = previous
    log.info("built Bento %s", bento.tag)
    return bento


def docker_status() -> tuple[bool, str]:
    """Whether `bentoml containerize` can run here (a Docker CLI and a reachable daemon)."""
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is None:
        return False, "Docker is not installed (no `docker` command on PATH)"
    try:
        probe = subprocess.run(
            [docker, "info"], check=False, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"the Docker daemon did not answer ({exc})"
    if probe.returncode != 0:
        return False, f"the Docker daemon is not reachable: {probe.stderr.strip()[:200]}"
    return True, "available"


def dockerfile_path(bento: Any) -> Path:
    """The Dockerfile BentoML generated inside the built Bento (checkable without Docker)."""
    return Path(bento.path) / "env" / "docker" / "Dockerfile"
