"""``POST /explain``: the class activation map of one image, from the bundle's torch model.

The answering path is ONNX on CPU and never imports torch; the map needs gradients, so this
loads the verified bundle with torch, once, the first time an explanation is asked for.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np


class Explainer:
    """The bundle's torch model on CPU (or CUDA when present), built on first use."""

    def __init__(self, bundle_dir: Path) -> None:
        self.bundle_dir = Path(bundle_dir)
        self._loaded = None
        self._lock = threading.Lock()  # one Grad-CAM at a time: its hooks are per model

    def explain(self, rgb: np.ndarray) -> bytes:
        """PNG of the image with the predicted class's map (rxvision.evaluation.explain)."""
        from rxvision.evaluation.explain import explain

        with self._lock:
            if self._loaded is None:
                import torch

                from rxvision.models.bundle import load_bundle

                device = "cuda" if torch.cuda.is_available() else "cpu"
                self._loaded = load_bundle(self.bundle_dir, map_location=device)
            info = self._loaded.info
            return explain(self._loaded.model, rgb, info.normalization_obj(), info.classes)
