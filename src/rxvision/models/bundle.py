"""A model bundle: everything needed to use a trained model alone, in one directory.

``weights.pt`` (the classifier's state dict) + ``bundle.json`` (backbone, head, classes,
normalisation, resolved config, metrics, dataset fingerprint, sha256 of weights.pt). Serving,
export and the pipelines read this format; loading never fetches pretrained weights.

Reading and verifying a bundle (:func:`read_bundle_info`, :func:`verify_bundle`) needs no
torch, so the ONNX serving path stays light; torch and timm are imported only to save or load
the model itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from rxvision.config import ModelConfig, RxVisionConfig
from rxvision.errors import RxVisionError

if TYPE_CHECKING:
    import torch

    from rxvision.calibration import Calibration
    from rxvision.models.classifier import RxVisionClassifier

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
WEIGHTS_FILE = "weights.pt"
META_FILE = "bundle.json"
# the ONNX export of the weights: written by rxvision.export, kept beside the bundle's files for
# rxvision.serving (the one definition; both import it from here)
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class BundleInfo:
    """The contents of bundle.json."""

    path: Path
    backbone: str
    head: str
    num_classes: int
    classes: list[str]
    normalization: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, float]
    fingerprint: str | None
    sha256: str
    created_at: str
    format: int = BUNDLE_FORMAT
    versions: dict[str, str] = field(default_factory=dict)
    # rxvision.calibration.Calibration.to_dict(): temperature, conformal and OOD thresholds,
    # version; None for a bundle that was not calibrated (answers then carry no label set)
    calibration: dict[str, Any] | None = None

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.model_validate(self.config.get("model", self.config))

    def normalization_obj(self) -> Any:
        """The data layer's Normalization object for this bundle."""
        from rxvision.data.transforms import Normalization

        return Normalization.from_dict(self.normalization)

    def calibration_obj(self) -> Calibration | None:
        """The stored calibration (NumPy only; apply it with rxvision.calibration)."""
        from rxvision.calibration import Calibration

        return None if self.calibration is None else Calibration.from_dict(self.calibration)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path")
        return data


@dataclass
class LoadedBundle:
    model: RxVisionClassifier
    info: BundleInfo


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = dataclasses.asdict(obj)
    elif isinstance(obj, dict):
        data = dict(obj)
    else:
        raise TypeError(f"cannot store {type(obj).__name__} in a bundle")
    return json.loads(
        json.dumps(data, default=lambda v: list(v) if isinstance(v, tuple) else str(v))
    )


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_bundle(
    directory: Path,
    model: RxVisionClassifier,
    classes: list[str],
    normalization: Any,
    config: RxVisionConfig | ModelConfig | dict[str, Any],
    metrics: dict[str, float] | None = None,
    fingerprint: str | None = None,
    calibration: dict[str, Any] | None = None,
) -> BundleInfo:
    """Write weights.pt then bundle.json (with weights.pt's sha256) into ``directory``."""
    import timm
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if len(classes) != model.num_classes:
        raise RxVisionError(
            f"{len(classes)} class names for a model with {model.num_classes} outputs"
        )
    cfg = _as_dict(config)
    if isinstance(config, ModelConfig):
        cfg = {"model": cfg}
    if "model" not in cfg:
        raise RxVisionError(
            "the bundle config must hold a 'model' section", "pass the RxVisionConfig"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    _atomic_write(weights, lambda tmp: torch.save(state, tmp))
    info = BundleInfo(
        path=directory,
        backbone=cfg["model"]["backbone"],
        head=model.head_type,
        num_classes=model.num_classes,
        classes=list(classes),
        normalization=_as_dict(normalization),
        config=cfg,
        metrics={k: float(v) for k, v in (metrics or {}).items()},
        fingerprint=fingerprint,
        sha256=sha256_file(weights),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        versions={"torch": torch.__version__, "timm": timm.__version__},
        calibration=calibration,
    )
    _atomic_write(
        directory / META_FILE, lambda tmp: tmp.write_text(json.dumps(info.to_dict(), indent=2))
    )
    log.info("saved model bundle %s (sha256 %s)", directory, info.sha256[:12])
    return info


def read_bundle_info(directory: Path) -> BundleInfo:
    """bundle.json alone (no weights loaded): for serving metadata and lineage labels."""
    directory = Path(directory)
    meta = directory / META_FILE
    if not meta.is_file():
        raise RxVisionError(
            f"{directory} is not a model bundle (no {META_FILE})",
            "point at a folder written by save_bundle",
        )
    try:
        data = json.loads(meta.read_text())
        return BundleInfo(path=directory, **data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise RxVisionError(
            f"{meta} is damaged: {exc}", "re-create the bundle from the training run"
        ) from None


def verify_bundle(directory: Path, verify: bool = True) -> BundleInfo:
    """bundle.json, checked without loading the model (no torch): the format is one this
    RxVision reads, weights.pt is there and, with ``verify``, its sha256 matches the recorded
    one. Raises RxVisionError otherwise."""
    info = read_bundle_info(directory)
    if info.format > BUNDLE_FORMAT:
        raise RxVisionError(
            f"bundle format {info.format} is newer than this RxVision ({BUNDLE_FORMAT})",
            "upgrade rxvision",
        )
    if not info.weights_path.is_file():
        raise RxVisionError(f"bundle {directory} has no {WEIGHTS_FILE}", "re-create the bundle")
    if verify:
        actual = sha256_file(info.weights_path)
        if actual != info.sha256:
            raise RxVisionError(
                f"bundle {directory}: {WEIGHTS_FILE} sha256 {actual[:12]}... "
                "does not match the recorded "
                f"{info.sha256[:12]}... (file changed or damaged)",
                "re-create or re-download the bundle; do not edit weights.pt by hand",
            )
    return info


def load_bundle(
    directory: Path, verify: bool = True, map_location: str | torch.device = "cpu"
) -> LoadedBundle:
    """The model (eval mode) and its info; with ``verify`` a sha256 mismatch is an error."""
    import torch

    from rxvision.models.build import build_model

    info = verify_bundle(directory, verify=verify)
    model = build_model(info.model_config, info.num_classes, load_weights=False)
    state = torch.load(info.weights_path, map_location=map_location, weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedBundle(model=model, info=info)
