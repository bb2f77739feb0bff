"""Runners: one call signature (NCHW float32 array -> logits array) over every inference
engine, so parity checks, the profiler and the serving Predictor treat formats alike.

Only :class:`TorchRunner` needs torch, and imports it when used: the ONNX serving path
(:class:`OnnxRunner`, :func:`softmax`) stays free of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rxvision.errors import RxVisionError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Anything that maps a float32 NCHW batch to float32 logits (N, C)."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """PyTorch eager (or TorchScript) module; autocast fp16 on CUDA when ``amp``."""

    def __init__(
        self, module: torch.nn.Module, device: str = "cpu", amp: bool = False, name: str = "torch"
    ) -> None:
        import torch

        self.name = name
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"
        self.module = module.to(self.device).eval()

    @property
    def has_embedding(self) -> bool:
        return callable(getattr(self.module, "forward_with_embedding", None))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp),
        ):
            out = self.module(x)
        return out.float().cpu().numpy()

    def logits_and_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and the pooled embedding in one backbone pass (RxVision classifiers)."""
        if not self.has_embedding:
            return self(batch), None
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp),
        ):
            logits, emb = self.module.forward_with_embedding(x)
        return logits.float().cpu().numpy(), emb.float().cpu().numpy()


class OnnxRunner:
    """ONNX Runtime session (CPU by default; CUDA/TensorRT providers when asked and present)."""

    def __init__(
        self,
        path: Path,
        providers: list[str | tuple[str, dict]] | None = None,
        threads: int | None = None,
        name: str = "onnx",
        spin_wait: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.name = name
        path = Path(path)
        self.path = path
        if not path.is_file():
            raise RxVisionError(
                f"ONNX model not found: {path}",
                "export the model first (rxvision.export.export_onnx)",
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        if not spin_wait:
            # idle intra-op threads sleep instead of spinning: in a server they would take the
            # CPU from request handling (ONNX Runtime spins by default, best for one process alone)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        wanted = [p for p in providers if (p[0] if isinstance(p, tuple) else p) in available]
        if not wanted:
            raise RxVisionError(
                f"none of the ONNX Runtime providers {providers} is available (have: {available})",
                "install the matching onnxruntime build or use runtime=torch",
            )
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    @property
    def has_embedding(self) -> bool:
        return len(self.output_names) > 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(self.output_names[:1], {self.input_name: x})[0]

    def logits_and_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, if the model was exported with it, the pooled embedding."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        outs = self.session.run(self.output_names, {self.input_name: x})
        return outs[0], (outs[1] if len(outs) > 1 else None)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable probabilities."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
