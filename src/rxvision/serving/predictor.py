"""The serving core: a verified model bundle behind one inference runtime, turning RGB
images into top-k labels with probabilities and the model version.

The ONNX path (a bundle with ``model.onnx`` beside it, served on CPU) never imports torch:
the bundle is verified from its files and only ONNX Runtime runs the model. torch is imported
when the torch runtime is chosen, when no ONNX file exists yet, or (for ``auto``) when an
NVIDIA GPU looks present."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rxvision.calibration import CalibratedBatch, calibrate
from rxvision.errors import RxVisionError
from rxvision.models.bundle import ONNX_FILE

log = logging.getLogger(__name__)

EXPORT_MANIFEST = "export.json"

Runtime = Literal["auto", "onnx", "torch"]


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float


@dataclass(frozen=True)
class ModelOutput:
    """A model call's result: plain softmax probabilities (N x C; what the traffic log and the
    drift reference record), pooled embeddings (N x D) or None, and the raw logits (N x C; what
    the calibration turns into the answer) or None."""

    probs: np.ndarray
    embeddings: np.ndarray | None = None
    logits: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the top label, its probability, the top-k and the model version;
    with a calibrated bundle the probabilities are calibrated and the answer carries the
    conformal ``label_set``, ``uncertain``, ``unknown`` (OOD), the OOD score and the
    ``calibration_version``; without one those are None. Built only by
    :func:`top_k_predictions`; new answer fields go here and in ``to_dict``."""

    label: str
    confidence: float
    top_k: list[LabelScore]
    model_version: str
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    label_set: list[str] | None = None
    uncertain: bool | None = None
    unknown: bool | None = None
    ood_score: float | None = None
    calibration_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON body of one prediction (the embedding stays server-side)."""
        return {
            "label": self.label,
            "confidence": self.confidence,
            "top_k": [{"label": s.label, "probability": s.probability} for s in self.top_k],
            "model_version": self.model_version,
            "label_set": self.label_set,
            "uncertain": self.uncertain,
            "unknown": self.unknown,
            "ood_score": self.ood_score,
            "calibration_version": self.calibration_version,
        }


# NVIDIA driver device nodes; /dev/dxg is the GPU under WSL2 (torch then has the final word)
_NVIDIA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def cuda_present() -> bool:
    """A cheap guess whether CUDA could be usable, without importing torch: an NVIDIA device
    node or ``nvidia-smi`` exists and ``CUDA_VISIBLE_DEVICES`` does not hide every GPU.
    False means there is certainly no usable GPU; True still needs torch to confirm it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return (
        any(os.path.exists(node) for node in _NVIDIA_DEVICE_NODES)
        or shutil.which("nvidia-smi") is not None
    )


def _cuda_available() -> bool:
    """torch.cuda.is_available(), importing torch only when a GPU may be there at all."""
    if not cuda_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_runtime(runtime: Runtime) -> Literal["onnx", "torch"]:
    """auto: PyTorch (with AMP) on CUDA, else ONNX Runtime on CPU."""
    if runtime == "auto":
        return "torch" if _cuda_available() else "onnx"
    if runtime not in ("onnx", "torch"):
        raise RxVisionError(f"unknown serving runtime '{runtime}'", "use auto, onnx or torch")
    return runtime


def _sha256(path: Path) -> str:
    from rxvision.models.bundle import sha256_file

    return sha256_file(path)


def write_export_manifest(
    directory: Path, onnx_path: Path, extra: dict[str, Any] | None = None
) -> Path:
    """Record the ONNX file's sha256 next to it so the Predictor can verify it at load."""
    manifest = Path(directory) / EXPORT_MANIFEST
    data = {
        "onnx_file": Path(onnx_path).name,
        "onnx_sha256": _sha256(Path(onnx_path)),
        **(extra or {}),
    }
    manifest.write_text(json.dumps(data, indent=2))
    return manifest


def preprocess_batch(images: Sequence[np.ndarray], normalization: Any) -> np.ndarray:
    """RGB uint8 images of any size -> one float32 batch N x 3 x S x S (the eval transform)."""
    from rxvision.data.transforms import preprocess_image

    if not images:
        size = int(normalization.image_size)
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return np.stack([preprocess_image(img, normalization) for img in images])


def top_k_predictions(
    probs: np.ndarray,
    classes: Sequence[str],
    top_k: int,
    model_version: str,
    embeddings: np.ndarray | None = None,
    calibrated: CalibratedBatch | None = None,
    calibration_version: str | None = None,
) -> list[Prediction]:
    """Probability rows -> Prediction objects with the ``top_k`` labels, best first. With
    ``calibrated`` (rxvision.calibration.calibrate of the same rows) its probabilities rank
    the labels and its set, uncertain and unknown flags join the answer."""
    k = max(1, min(int(top_k), len(classes)))
    rows = np.asarray(probs) if calibrated is None else calibrated.probs
    out = []
    for i, row in enumerate(rows):
        order = np.argsort(-row, kind="stable")[:k]
        top = [LabelScore(classes[j], float(row[j])) for j in order]
        trust: dict[str, Any] = {}
        if calibrated is not None:
            members = np.flatnonzero(calibrated.sets[i])
            members = members[np.argsort(-row[members], kind="stable")]
            trust = {
                "label_set": [classes[j] for j in members],
                "uncertain": bool(calibrated.uncertain[i]),
                "unknown": bool(calibrated.unknown[i]),
                "ood_score": float(calibrated.ood_score[i]),
                "calibration_version": calibration_version,
            }
        out.append(
            Prediction(
                label=top[0].label,
                confidence=top[0].probability,
                top_k=top,
                model_version=model_version,
                embedding=None if embeddings is None else embeddings[i],
                **trust,
            )
        )
    return out


class Predictor:
    """Preprocess -> batch inference -> softmax -> top-k. ``predict_arrays`` is the batchable
    core the service's model API wraps; ``predict`` does the whole path for RGB images."""

    def __init__(
        self,
        runner: Any,
        info: Any,
        runtime: str,
        top_k: int = 3,
        model_version: str | None = None,
    ) -> None:
        self.runner = runner
        self.info = info
        self.runtime = runtime
        self.classes: list[str] = list(info.classes)
        self.normalization = info.normalization_obj()
        self.top_k = max(1, min(int(top_k), len(self.classes)))
        self.model_version = model_version or f"{info.backbone}-{info.sha256[:12]}"
        self.image_size = int(self.normalization.image_size)
        # None for an uncalibrated bundle: answers then carry plain softmax and no label set
        self.calibration = info.calibration_obj() if hasattr(info, "calibration_obj") else None

    @classmethod
    def from_bundle(
        cls,
        directory: Path,
        runtime: Runtime = "auto",
        top_k: int = 3,
        model_version: str | None = None,
        threads: int | None = None,
        onnx_dir: Path | None = None,
        verify: bool = True,
        spin_wait: bool = True,
    ) -> Predictor:
        """Load a model bundle (sha256 verified) for ``runtime``. ONNX uses ``model.onnx``
        beside the bundle (verified against export.json when present) or exports one into
        ``onnx_dir`` (default: a temporary folder)."""
        from rxvision.export.runtimes import OnnxRunner, TorchRunner
        from rxvision.models.bundle import load_bundle, verify_bundle

        directory = Path(directory)
        # bundle.json, weights.pt and its sha256 are checked from the files (no torch)
        info = verify_bundle(directory, verify=verify)
        chosen = resolve_runtime(runtime)
        onnx_path = directory / ONNX_FILE
        if chosen == "onnx" and onnx_path.is_file():
            # the exported model is there: ONNX Runtime alone, the torch model is never built
            manifest = directory / EXPORT_MANIFEST
            if verify and manifest.is_file():
                expected = json.loads(manifest.read_text()).get("onnx_sha256")
                if expected and _sha256(onnx_path) != expected:
                    raise RxVisionError(
                        f"{onnx_path}: sha256 does not match {manifest} (file changed or damaged)",
                        "re-run the deployment pipeline to re-export the model",
                    )
            runner = OnnxRunner(onnx_path, threads=threads, name="onnx", spin_wait=spin_wait)
        else:
            import torch

            loaded = load_bundle(directory, verify=False)  # weights.pt was verified above
            info = loaded.info
            if chosen == "torch":
                if threads:
                    torch.set_num_threads(threads)
                device = "cuda" if torch.cuda.is_available() else "cpu"
                runner = TorchRunner(
                    loaded.model, device=device, amp=device == "cuda", name="torch"
                )
            else:
                from rxvision.export.onnx_export import export_onnx

                target = Path(onnx_dir or tempfile.mkdtemp(prefix="rxvision-onnx-"))
                onnx_path = export_onnx(
                    loaded.model, target / ONNX_FILE, info.normalization["image_size"]
                )
                runner = OnnxRunner(onnx_path, threads=threads, name="onnx", spin_wait=spin_wait)
        log.info("loaded bundle %s for %s runtime", directory, chosen)
        return cls(runner, info, chosen, top_k=top_k, model_version=model_version)

    @property
    def has_embedding(self) -> bool:
        return bool(getattr(self.runner, "has_embedding", False))

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images of any size -> one float32 batch N x 3 x S x S."""
        return preprocess_batch(images, self.normalization)

    def predict_arrays(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed batch -> (plain softmax probabilities N x C, embeddings N x D or None)."""
        out = self.infer(batch)
        return out.probs, out.embeddings

    def infer(self, batch: np.ndarray) -> ModelOutput:
        """Preprocessed batch -> ``ModelOutput`` (what the service's batcher carries): the
        runners give logits; the plain softmax is taken here, the calibration is applied later
        by :meth:`to_predictions`."""
        from rxvision.export.runtimes import softmax

        if len(batch) == 0:
            empty = np.zeros((0, len(self.classes)), dtype=np.float32)
            return ModelOutput(empty, None, empty)
        logits, emb = self.runner.logits_and_embedding(batch)
        logits = np.asarray(logits, dtype=np.float32)
        return ModelOutput(
            softmax(logits), None if emb is None else np.asarray(emb, dtype=np.float32), logits
        )

    def calibrated(self, output: ModelOutput) -> CalibratedBatch | None:
        """The calibration applied to a model call's logits (None when uncalibrated)."""
        if self.calibration is None or output.logits is None or len(output.logits) == 0:
            return None
        return calibrate(output.logits, self.calibration)

    def to_predictions(
        self, output: ModelOutput | np.ndarray, embeddings: np.ndarray | None = None
    ) -> list[Prediction]:
        """A model call's output (or bare probabilities) -> Prediction objects with the top-k
        labels; calibrated when the bundle has a calibration and ``output`` has logits."""
        if not isinstance(output, ModelOutput):
            output = ModelOutput(np.asarray(output), embeddings)
        cal = self.calibrated(output)
        version = self.calibration.version if cal is not None else None
        emb = output.embeddings if embeddings is None else embeddings
        return top_k_predictions(
            output.probs, self.classes, self.top_k, self.model_version, emb, cal, version
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """RGB uint8 images -> one Prediction each (empty list for no images)."""
        return self.to_predictions(self.infer(self.preprocess(images)))

    def warmup(self, batch_size: int = 1) -> None:
        """One inference on a blank batch so the first request does not pay for lazy init."""
        self.predict_arrays(
            np.zeros((batch_size, 3, self.image_size, self.image_size), dtype=np.float32)
        )
