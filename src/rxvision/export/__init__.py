"""Export a trained model to serving formats, prove parity with PyTorch, and profile them.

``export_model`` is what the deployment pipeline calls; the pieces (``export_onnx``,
``export_torchscript``, ``quantize_int8``, ``check_parity``, ``profile_latency``) are usable alone.

torch is imported only where it is needed: the ``onnx_export`` names are loaded lazily (PEP 562)
and ``export_model``/``tensorrt_status`` import it when called, so the serving path
(``rxvision.export.runtimes.OnnxRunner``, ``softmax``) does not pull in torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rxvision.config import ExportConfig
from rxvision.errors import RxVisionError
from rxvision.export.checks import LatencyStats, ParityReport, check_parity, profile_latency
from rxvision.export.runtimes import OnnxRunner, Runner, TorchRunner, softmax
from rxvision.lazy import lazy_names
from rxvision.models.bundle import ONNX_FILE

if TYPE_CHECKING:
    import torch

    from rxvision.export.onnx_export import (
        INPUT_NAME,
        OUTPUT_NAME,
        export_onnx,
        export_torchscript,
        load_torchscript,
        quantize_int8,
    )

# names from rxvision.export.onnx_export (which imports torch), resolved on first use
_LAZY = {
    "INPUT_NAME": "onnx_export",
    "OUTPUT_NAME": "onnx_export",
    "export_onnx": "onnx_export",
    "export_torchscript": "onnx_export",
    "load_torchscript": "onnx_export",
    "quantize_int8": "onnx_export",
}

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportResult",
    "LatencyStats",
    "OnnxRunner",
    "ParityReport",
    "Runner",
    "TorchRunner",
    "check_parity",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "profile_latency",
    "quantize_int8",
    "softmax",
    "tensorrt_status",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)


log = logging.getLogger(__name__)

TORCHSCRIPT_FILE = "model.torchscript.pt"
# formats that compute what PyTorch computes (logits within export.parity_atol); the others
# (int8, TensorRT fp16) approximate it and are judged by top-1 agreement only
EXACT_FORMATS = ("onnx", "torchscript")


def tensorrt_status() -> tuple[bool, str]:
    """Whether TensorRT fp16 can run here, and if not, why (for the profile)."""
    import torch

    if not torch.cuda.is_available():
        return False, "unavailable: no CUDA device"
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "unavailable: onnxruntime is not installed"
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return (
            False,
            (
                "unavailable: this onnxruntime build has no TensorrtExecutionProvider "
                "(install onnxruntime-gpu with TensorRT)"
            ),
        )
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "unavailable: the tensorrt package is not installed"
    return True, "available"


@dataclass
class ExportResult:
    """Everything the export produced: files, parity per format, int8 accuracy change, profile."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    parity: dict[str, ParityReport] = field(default_factory=dict)
    profile: list[LatencyStats] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every exact format (ONNX, TorchScript) matches PyTorch."""
        return all(r.passed for name, r in self.parity.items() if name in EXACT_FORMATS)

    @property
    def approximate_failed(self) -> list[str]:
        """Approximate formats (int8, TensorRT fp16) whose top-1 agreement fell below
        export.approx_min_top1_agreement: reported and logged; serving uses the exact ONNX."""
        return [n for n, r in self.parity.items() if n not in EXACT_FORMATS and not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (paths as strings)."""
        int8 = self.parity.get("int8")
        return {
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
            "parity": {k: v.to_dict() for k, v in self.parity.items()},
            "int8_accuracy_change": int8.accuracy_change if int8 else None,
            "profile": [s.to_dict() for s in self.profile],
            "unavailable": dict(self.unavailable),
            "passed": self.passed,
            "approximate_failed": self.approximate_failed,
        }


def export_model(
    model: torch.nn.Module,
    out_dir: Path,
    cfg: ExportConfig,
    image_size: int,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    profile: bool = True,
) -> ExportResult:
    """Export ``model`` to every format in ``cfg.formats`` under ``out_dir``, check each against
    PyTorch on ``images`` (preprocessed test images, N x 3 x S x S), profile them, and raise
    ``RxVisionError`` if ONNX or TorchScript disagree with PyTorch beyond ``cfg.parity_atol``."""
    from rxvision.export.onnx_export import (
        export_onnx,
        export_torchscript,
        load_torchscript,
        quantize_int8,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = np.asarray(images, dtype=np.float32)[: cfg.parity_images]
    if labels is not None:
        labels = np.asarray(labels)[: cfg.parity_images]
    model = model.eval().cpu()
    reference = TorchRunner(model, name="torch")
    runners: list[Runner] = [reference]
    result = ExportResult()
    if "onnx" in cfg.formats:
        path = export_onnx(model, out_dir / ONNX_FILE, image_size, cfg.opset, cfg.onnx_exporter)
        result.artifacts["onnx"] = path
        runners.append(OnnxRunner(path, name="onnx"))
    if "torchscript" in cfg.formats:
        path = export_torchscript(model, out_dir / TORCHSCRIPT_FILE, image_size)
        result.artifacts["torchscript"] = path
        runners.append(TorchRunner(load_torchscript(path), name="torchscript"))
    if "int8" in cfg.formats:
        runners.append(TorchRunner(quantize_int8(model), name="int8"))
    if cfg.tensorrt:
        ok, why = tensorrt_status()
        if ok and "onnx" in result.artifacts:
            trt = ("TensorrtExecutionProvider", {"trt_fp16_enable": True})
            runners.append(
                OnnxRunner(result.artifacts["onnx"], providers=[trt], name="tensorrt_fp16")
            )
        else:
            result.unavailable["tensorrt_fp16"] = (
                why if not ok else "unavailable: needs the onnx format"
            )
    for runner in runners[1:]:
        exact = runner.name in EXACT_FORMATS
        result.parity[runner.name] = check_parity(
            reference,
            runner,
            images,
            atol=cfg.parity_atol if exact else None,
            labels=labels,
            min_top1_agreement=1.0 if exact else cfg.approx_min_top1_agreement,
        )
    for name in result.approximate_failed:
        log.warning(
            "%s agrees with PyTorch on only %.3f of top-1 labels (floor %.3f): not for serving",
            name,
            result.parity[name].top1_agreement,
            cfg.approx_min_top1_agreement,
        )
    if profile:
        for runner in runners:
            result.profile.extend(
                profile_latency(
                    runner,
                    image_size,
                    cfg.profile_batch_sizes,
                    cfg.profile_iterations,
                    cfg.profile_warmup,
                )
            )
    failed = {k: v for k, v in result.parity.items() if k in EXACT_FORMATS and not v.passed}
    if failed:
        detail = "; ".join(
            f"{k}: max|diff| {v.max_abs_diff:.2e} (atol {v.atol:g}), "
            f"top-1 agreement {v.top1_agreement:.3f}"
            for k, v in failed.items()
        )
        raise RxVisionError(
            f"exported model disagrees with PyTorch: {detail}",
            "check the export opset/exporter (export.opset, export.onnx_exporter) "
            "or raise export.parity_atol",
        )
    return result
