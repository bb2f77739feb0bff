"""What the Bento needs: decode untrusted uploads and predict with a verified model bundle."""

from rxvision.serving.decode import ALLOWED_FORMATS, REASONS, ImageLimits, InvalidImage, decode_image
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
    "ImageLimits",
    "InvalidImage",
    "LabelScore",
    "ONNX_FILE",
    "Prediction",
    "Predictor",
    "REASONS",
    "preprocess_batch",
    "top_k_predictions",
    "decode_image",
    "resolve_runtime",
    "write_export_manifest",
]
