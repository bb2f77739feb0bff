"""Put a model bundle into the BentoML model store, ready for the service: the bundle (sha256
in bundle.json), its ONNX export (sha256 in export.json) and optional drift projector, with
lineage labels. Used by the deployment pipeline, the serving tests and the benchmarks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import bentoml

from rxvision.export import export_onnx
from rxvision.models import read_bundle_info
from rxvision.serving import ONNX_FILE, write_export_manifest

log = logging.getLogger(__name__)

MODEL_NAME = "rxvision-classifier"
BUNDLE_SUBDIR = "bundle"
PROJECTOR_FILE = "projector.json"


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
) -> bentoml.Model:
    """Copy ``bundle`` into a new BentoML model ``name`` (under ``bundle/``), add the ONNX
    export (``onnx_file`` if given, else exported now) with its sha256 manifest, and label it
    with the bundle's sha256, backbone and classes plus ``labels``."""
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
        shutil.copytree(bundle, target, ignore=shutil.ignore_patterns(ONNX_FILE, "export.json", "*.tmp"))
        onnx_path = target / ONNX_FILE
        if onnx_file is not None:
            shutil.copy2(onnx_file, onnx_path)
        else:
            from rxvision.models import load_bundle

            loaded = load_bundle(target, verify=True)
            export_onnx(loaded.model, onnx_path, int(info.normalization["image_size"]), opset=opset)
        write_export_manifest(target, onnx_path)
        if projector_file is not None and Path(projector_file).is_file():
            shutil.copy2(projector_file, Path(model.path) / PROJECTOR_FILE)
    log.info("saved %s into the BentoML model store", model.tag)
    return model
