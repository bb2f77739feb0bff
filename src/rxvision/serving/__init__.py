"""What the Bento needs: decode untrusted uploads and predict with a verified model bundle."""

from rxvision.serving.decode import (
    ALLOWED_FORMATS,
    REASONS,
    ImageLimits,
    InvalidImage,
    decode_image,
)
from rxvision.serving.predictor import (
    EXPORT_MANIFEST,
    ONNX_FILE,
    LabelScore,
    Prediction,
    Predictor,
    preprocess_batch,
    resolve_runtime,
    top_k_predictions,
    write_export_manifest,
)

__all__ = [
    "ALLOWED_FORMATS",
    "EXPORT_MANIFEST",
    "ONNX_FILE",
    "REASONS",
    "ImageLimits",
    "InvalidImage",
    "LabelScore",
    "Prediction",
    "Predictor",
    "decode_image",
    "preprocess_batch",
    "resolve_runtime",
    "top_k_predictions",
    "write_export_manifest",
]
