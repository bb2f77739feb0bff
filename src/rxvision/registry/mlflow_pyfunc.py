"""The registered model as an MLflow pyfunc model, so MLflow's own tools can use it:
``mlflow.pyfunc.load_model("models:/rxvision-classifier@production")`` and
``mlflow models serve -m models:/rxvision-classifier@production``.

Input: a DataFrame with an ``image`` column of encoded image bytes (JPEG/PNG/...; base64 text
is accepted too, as MLflow's REST input sends it). Output: one row per image with ``label``,
``confidence`` and ``top_k`` (JSON). The model bundle travels as the pyfunc's artifact.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc

BUNDLE_ARTIFACT = "bundle"
PYFUNC_NAME = "model"


class RxVisionPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the bundle with the serving predictor (ONNX Runtime on CPU, PyTorch on CUDA)."""

    def load_context(self, context: Any) -> None:
        from rxvision.serving import Predictor

        self._predictor = Predictor.from_bundle(
            Path(context.artifacts[BUNDLE_ARTIFACT]), runtime="auto"
        )

    # no type hints here: MLflow would derive a second signature from them
    def predict(self, context, model_input, params=None):
        import pandas as pd

        from rxvision.serving import ImageLimits, decode_image

        column = model_input["image"] if isinstance(model_input, pd.DataFrame) else model_input
        images = [decode_image(_as_bytes(v), ImageLimits()) for v in list(column)]
        rows = [p.to_dict() for p in self._predictor.predict(images)]
        return pd.DataFrame(
            {
                "label": [r["label"] for r in rows],
                "confidence": [float(r["confidence"]) for r in rows],
                "top_k": [json.dumps(r["top_k"]) for r in rows],
            }
        )


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(str(value))


def example_image(size: int = 32) -> bytes:
    """A small PNG for the model's input example (a grey square with a white disc)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    rgb = np.where(disc[..., None], 235, 90).astype(np.uint8).repeat(3, axis=2)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def log_pyfunc(bundle_dir: Path, registered_model_name: str | None = None) -> Any:
    """Log the bundle as a pyfunc model into the active MLflow run (with signature and input
    example); returns MLflow's ModelInfo."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"image": [example_image()]})
    output = pd.DataFrame({"label": ["label"], "confidence": [1.0], "top_k": ["[]"]})
    return mlflow.pyfunc.log_model(
        name=PYFUNC_NAME,
        python_model=RxVisionPyfunc(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=infer_signature(example, output),
        input_example=example,
        registered_model_name=registered_model_name,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    """What the pyfunc needs at load time, at the versions installed here (no pip resolve)."""
    import importlib.metadata as md

    out = []
    for name in ("rxvision", "mlflow", "onnxruntime", "numpy", "pandas", "pillow", "torch", "timm"):
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return out
