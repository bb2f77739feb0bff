"""Per-image and per-prediction features, computed the same way for the training reference
and for served traffic, so drift between the two means the world changed, not the code.

Image features are taken on a downscaled copy (long side <= ``FEATURE_SIDE`` px) so they
cost well under a millisecond per request and do not depend on the upload's resolution
(except ``width``, ``height``, ``aspect`` and ``file_size``, which describe the upload).

The per-request path (image and prediction features, applying a saved projector) needs only
numpy and OpenCV; scikit-learn (fitting the projector) and pandas (:func:`feature_table`) are
imported where they are used, so the service starts without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2  # OpenCV ships with albumentations; its resize/Laplacian/HSV are the fast path.
import numpy as np

from rxvision.errors import RxVisionError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

#: Images are downscaled so their long side is at most this many pixels before features.
FEATURE_SIDE = 64

#: Image-content features (numeric), in table order.
IMAGE_FEATURES: tuple[str, ...] = (
    "brightness",  # mean luma, 0..1
    "contrast",  # RMS contrast: std of luma, 0..0.5
    "saturation",  # mean HSV saturation, 0..1
    "sharpness",  # log1p(variance of the Laplacian of luma, 0..255 scale); low = blurred
    "colourfulness",  # Hasler & Suesstrunk (2003) colourfulness M, 0..255 scale
    "width",  # pixels of the upload
    "height",
    "aspect",  # width / height
    "file_size",  # bytes of the upload (NaN when unknown)
)
#: Prediction features: ``predicted_class`` is categorical, the others numeric.
PREDICTION_FEATURES: tuple[str, ...] = ("predicted_class", "confidence", "entropy")
#: Categorical columns of the feature table.
CATEGORICAL_FEATURES: tuple[str, ...] = ("predicted_class",)
#: Prefix of the embedding-projection columns: ``emb_0``, ``emb_1``, ...
EMBEDDING_PREFIX = "emb_"


def embedding_columns(n_components: int) -> tuple[str, ...]:
    """Names of the embedding-projection columns for ``n_components`` components."""
    return tuple(f"{EMBEDDING_PREFIX}{i}" for i in range(n_components))


def feature_columns(n_components: int, with_predictions: bool = True) -> tuple[str, ...]:
    """The stable column order of :func:`feature_table` (the schema the drift check reads)."""
    cols = IMAGE_FEATURES + (PREDICTION_FEATURES if with_predictions else ())
    return cols + embedding_columns(n_components)


#: The feature-table schema with the default four embedding components (MonitoringConfig).
FEATURE_SCHEMA: tuple[str, ...] = feature_columns(4)


_LUMA = np.array([[0.299, 0.587, 0.114]], dtype=np.float32)
_OPPONENT = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]], dtype=np.float32)
_LUMA.flags.writeable = False
_OPPONENT.flags.writeable = False


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise RxVisionError(
            f"image features need an HxWx3 RGB array, got shape {arr.shape}",
            "decode the image to RGB (e.g. PIL .convert('RGB')) before computing features",
        )
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr, initial=0.0)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return arr


def _downscale(rgb: np.ndarray, side: int) -> np.ndarray:
    # Per-request budget: an integer-stride view (free) to at most 2x the target, then one
    # bilinear resize. INTER_AREA / pyrDown cost 10-30x more on large uploads.
    h, w = rgb.shape[:2]
    stride = max(1, max(h, w) // (2 * side))
    if stride > 1:
        rgb = rgb[::stride, ::stride]
        h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def image_features(
    rgb: np.ndarray, file_size: int | None = None, side: int = FEATURE_SIDE
) -> dict[str, float]:
    """Content features of one decoded RGB image (HxWx3 uint8), keyed by ``IMAGE_FEATURES``.

    Raises RxVisionError for an array that is not an image.
    """
    full = _as_rgb_uint8(rgb)
    height, width = full.shape[:2]
    small = np.ascontiguousarray(_downscale(full, side))
    # One C call per statistic (cv2.meanStdDev) instead of several numpy reductions: this
    # runs per served image.
    f = small.astype(np.float32)
    luma = cv2.transform(f, _LUMA)  # ITU-R BT.601, the luma PIL's "L" uses
    luma_mean, luma_std = (float(v[0, 0]) for v in cv2.meanStdDev(luma))
    sat_mean = cv2.mean(cv2.cvtColor(small, cv2.COLOR_RGB2HSV))[1]  # S in 0..255
    lap_std = float(cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_32F, ksize=3))[1][0, 0])
    # Hasler & Suesstrunk colourfulness on the opponent channels rg = R-G, yb = (R+G)/2-B.
    opp_mean, opp_std = cv2.meanStdDev(cv2.transform(f, _OPPONENT))
    colourfulness = float(np.hypot(*opp_std.ravel()) + 0.3 * np.hypot(*opp_mean.ravel()))
    return {
        "brightness": luma_mean / 255.0,
        "contrast": luma_std / 255.0,
        "saturation": sat_mean / 255.0,
        "sharpness": float(np.log1p(lap_std**2)),
        "colourfulness": colourfulness,
        "width": float(width),
        "height": float(height),
        "aspect": float(width / height),
        "file_size": float(file_size) if file_size is not None else float("nan"),
    }


def prediction_features(probs: np.ndarray, classes: Sequence[str]) -> list[dict[str, object]]:
    """Predicted class, confidence (top-1 probability) and entropy (nats) per row of
    ``probs`` (n x num_classes, rows summing to 1)."""
    p = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    if p.shape[1] != len(classes):
        raise RxVisionError(
            f"probabilities have {p.shape[1]} columns but there are {len(classes)} classes",
            "pass the softmax output of the model together with its own class list",
        )
    top = p.argmax(axis=1)
    conf = p[np.arange(len(p)), top]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return [
        {"predicted_class": str(classes[i]), "confidence": float(c), "entropy": float(e)}
        for i, c, e in zip(top, conf, ent)
    ]


@dataclass
class EmbeddingProjector:
    """PCA of the model's pooled embeddings, fitted on the training set.

    A few leading components go into the feature table so that a new kind of pill is seen
    even when its brightness, colour and sharpness look ordinary. Saved as ``.npz``.
    """

    mean: np.ndarray  # (dim,)
    components: np.ndarray  # (k, dim)
    explained_variance_ratio: np.ndarray  # (k,)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, embeddings: np.ndarray, n_components: int, seed: int = 0) -> EmbeddingProjector:
        """Fit on training embeddings (n x dim); ``n_components`` is capped by n and dim."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise RxVisionError(
                "fitting the embedding projection needs at least 2 embeddings (n x dim), "
                f"got {x.shape}",
                "pass the training set's embeddings from model.embed(...)",
            )
        from sklearn.decomposition import PCA

        k = max(1, min(n_components, x.shape[0] - 1, x.shape[1]))
        pca = PCA(n_components=k, svd_solver="full", random_state=seed).fit(x)
        return cls(
            mean=pca.mean_.astype(np.float32),
            components=pca.components_.astype(np.float32),
            explained_variance_ratio=pca.explained_variance_ratio_.astype(np.float32),
        )

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Project embeddings (n x dim) to (n x k)."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if x.shape[1] != self.dim:
            raise RxVisionError(
                f"embeddings have {x.shape[1]} dimensions, the projection was fitted on {self.dim}",
                "use the projector saved with the same model version that produced the embeddings",
            )
        return (x - self.mean) @ self.components.T

    def save(self, path: Path) -> Path:
        """Write ``.npz`` (no pickle), or JSON when the name ends in ``.json``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json())
            return path
        with path.open("wb") as fh:
            np.savez(
                fh,
                mean=self.mean,
                components=self.components,
                explained_variance_ratio=self.explained_variance_ratio,
            )
        return path

    @classmethod
    def load(cls, path: Path) -> EmbeddingProjector:
        """Read a projector written by :meth:`save` (``.npz`` or JSON, told apart by content)."""
        path = Path(path)
        if not path.is_file():
            raise RxVisionError(
                f"embedding projector not found: {path}",
                "run the training pipeline, which saves it with the reference features",
            )
        try:
            with path.open("rb") as fh:
                is_json = fh.read(1) == b"{"
            if is_json:
                return cls.from_json(path.read_text())
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    mean=data["mean"],
                    components=data["components"],
                    explained_variance_ratio=data["explained_variance_ratio"],
                )
        except (KeyError, ValueError, OSError, TypeError) as exc:
            raise RxVisionError(
                f"embedding projector {path} is unreadable: {exc}",
                "re-run the deployment pipeline to copy the model version's projector",
            ) from None

    def to_json(self) -> str:
        """JSON form, for metadata stores that want text."""
        return json.dumps(
            {
                "mean": self.mean.tolist(),
                "components": self.components.tolist(),
                "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> EmbeddingProjector:
        data = json.loads(text)
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float32),
            components=np.asarray(data["components"], dtype=np.float32),
            explained_variance_ratio=np.asarray(data["explained_variance_ratio"], dtype=np.float32),
        )


def feature_table(
    images: Iterable[np.ndarray],
    file_sizes: Sequence[int | None] | None = None,
    probs: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    embeddings: np.ndarray | None = None,
    projector: EmbeddingProjector | None = None,
    n_components: int | None = None,
) -> pd.DataFrame:
    """One row per image with the stable columns of :func:`feature_columns`.

    ``probs`` + ``classes`` add the prediction columns; ``embeddings`` + ``projector`` fill
    ``emb_*``. Embedding columns are present (NaN) whenever ``n_components`` or a projector
    says they should be, so reference and traffic tables always share one schema.
    """
    import pandas as pd

    rows = [
        image_features(img, None if file_sizes is None else file_sizes[i])
        for i, img in enumerate(images)
    ]
    df = pd.DataFrame(rows, columns=list(IMAGE_FEATURES))
    with_pred = probs is not None
    if with_pred:
        if classes is None:
            raise RxVisionError(
                "feature_table got probabilities without class names", "pass classes="
            )
        preds = prediction_features(probs, classes)
        if len(preds) != len(df):
            raise RxVisionError(f"{len(df)} images but {len(preds)} probability rows")
        pred_df = pd.DataFrame(preds, columns=list(PREDICTION_FEATURES))
        df = pd.concat([df, pred_df], axis=1)
    k = projector.n_components if projector is not None else (n_components or 0)
    emb_cols = embedding_columns(k)
    if k:
        if embeddings is not None and projector is not None:
            proj = projector.transform(embeddings)
            if len(proj) != len(df):
                raise RxVisionError(f"{len(df)} images but {len(proj)} embeddings")
            df[list(emb_cols)] = proj.astype(np.float64)
        else:
            for col in emb_cols:
                df[col] = np.nan
    return df[list(feature_columns(k, with_pred))]
