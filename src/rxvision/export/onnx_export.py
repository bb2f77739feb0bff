"""ONNX export with a dynamic batch axis.

Default exporter is torch's TorchScript-based one (``dynamo=False``): offline it converts
timm models in under a second at any opset >= 13. The dynamo exporter (torch's default since
2.9) also works here but takes ~20x longer and cannot down-convert some ops (Pad) to opset 17;
choose it with ``exporter="dynamo"``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import torch

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EMBEDDING_NAME = "embedding"


class LogitsAndEmbedding(torch.nn.Module):
    """One forward pass giving logits and the pooled embedding (which drift monitoring
    projects), so serving does not run the backbone twice."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        return callable(getattr(model, "forward_with_embedding", None))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_embedding(x)


def export_onnx(
    model: torch.nn.Module,
    out_path: Path,
    image_size: int,
    opset: int = 17,
    exporter: Literal["torchscript", "dynamo"] = "torchscript",
    with_embedding: bool = True,
) -> Path:
    """Write ``model`` as ONNX (input ``input`` N x 3 x S x S, output ``logits`` N x C and,
    for RxVision classifiers with ``with_embedding``, ``embedding`` N x D) with the batch axis
    dynamic, validate it with onnx.checker and return the path."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.zeros(2, 3, image_size, image_size)
    outputs = [OUTPUT_NAME]
    if with_embedding and LogitsAndEmbedding.supports(model):
        model = LogitsAndEmbedding(model).eval()
        outputs.append(EMBEDDING_NAME)
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    with warnings.catch_warnings():
        # the TorchScript exporter is marked deprecated in torch 2.14 but is the robust choice here
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                model,
                (example,),
                str(out_path),
                input_names=[INPUT_NAME],
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=exporter == "dynamo",
                external_data=False,
            )
        except Exception as exc:
            raise RxVisionError(
                f"ONNX export ({exporter} exporter, opset {opset}) failed: {exc}",
                "try export.onnx_exporter=dynamo or another opset, "
                "or drop onnx from export.formats",
            ) from exc
    onnx.checker.check_model(str(out_path))
    log.info("exported ONNX (%s exporter, opset %d) to %s", exporter, opset, out_path)
    return out_path


def export_torchscript(model: torch.nn.Module, out_path: Path, image_size: int) -> Path:
    """Trace ``model`` to TorchScript (runs without the Python model code) and save it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        traced = torch.jit.freeze(traced)
    traced.save(str(out_path))
    log.info("exported TorchScript to %s", out_path)
    return out_path


def load_torchscript(path: Path) -> torch.nn.Module:
    """Load a saved TorchScript module on CPU."""
    path = Path(path)
    if not path.is_file():
        raise RxVisionError(
            f"TorchScript model not found: {path}", "export it first (export_torchscript)"
        )
    return torch.jit.load(str(path), map_location="cpu").eval()


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized
    on the fly). On conv nets only the classifier head shrinks; the figure is reported, not
    assumed."""
    import copy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(
            copy.deepcopy(model).eval().cpu(), {torch.nn.Linear}, dtype=torch.qint8
        )
