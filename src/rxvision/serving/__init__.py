"""What the Bento needs: decode untrusted uploads and predict with a verified model bundle."""

from rxvision.serving.classify import (
    Classified,
    ModelBusy,
    ModelUnavailable,
    classify,
    classify_sync,
    direct_infer,
    prepare,
)
from rxvision.serving.decode import (
    ALLOWED_FORMATS,
    REASONS,
    ImageLimits,
    InvalidImage,
    decode_image,
    decode_images,
)
from rxvision.serving.fallback import CircuitBreaker, ModelChain, ServedModel
from rxvision.serving.predictor import (
    EXPORT_MANIFEST,
    ONNX_FILE,
    LabelScore,
    ModelOutput,
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
    "CircuitBreaker",
    "Classified",
    "ImageLimits",
    "InvalidImage",
    "LabelScore",
    "ModelBusy",
    "ModelChain",
    "ModelOutput",
    "ModelUnavailable",
    "Prediction",
    "Predictor",
    "ServedModel",
    "classify",
    "classify_sync",
    "decode_image",
    "decode_images",
    "direct_infer",
    "prepare",
    "preprocess_batch",
    "resolve_runtime",
    "top_k_predictions",
    "write_export_manifest",
]
