"""Offline (batch) inference over a folder or a CSV manifest, through the same decode ->
preprocess -> predict path as the service, so the predictions and logged features match."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rxvision.data.images import IMAGE_EXTENSIONS
from rxvision.errors import RxVisionError
from rxvision.serving.classify import classify_sync
from rxvision.serving.decode import ImageLimits
from rxvision.serving.predictor import Prediction, Predictor

log = logging.getLogger(__name__)

# the data layer's image files (all of them formats the service accepts) plus phone formats
IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS | {".heic", ".heif", ".mpo"}))

# called per batch with (decoded RGB images, plain softmax probabilities, file sizes,
# embeddings or None, the answers): what the traffic log records
BatchHook = Callable[
    [list[np.ndarray], np.ndarray, list[int], "np.ndarray | None", list[Prediction]], Any
]


@dataclass(frozen=True)
class InputItem:
    path: Path
    label: str | None = None


def list_inputs(source: Path) -> list[InputItem]:
    """Images under a folder (recursively, by suffix) or the rows of a CSV with a ``path``
    column (relative paths are relative to the CSV; an optional ``label`` column is kept)."""
    source = Path(source).expanduser()
    if source.is_dir():
        items = [
            InputItem(p)
            for p in sorted(source.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ]
    elif source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "path" not in [c.strip() for c in (reader.fieldnames or [])]:
                raise RxVisionError(
                    f"{source} has no 'path' column",
                    "the first row must be a header with path[,label]",
                )
            items = []
            for row in reader:
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("path"):
                    continue
                path = Path(row["path"]).expanduser()
                items.append(
                    InputItem(
                        path if path.is_absolute() else source.parent / path,
                        row.get("label") or None,
                    )
                )
    else:
        raise RxVisionError(
            f"batch-inference input {source} is neither a folder nor a .csv file",
            "pass --input with an image folder or a CSV manifest (column path, optional label)",
        )
    if not items:
        raise RxVisionError(
            f"no images found in {source}", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return items


def _chunks(items: list[InputItem], size: int) -> Iterator[list[InputItem]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def classify_items(
    items: list[InputItem],
    predictor: Predictor,
    limits: ImageLimits,
    batch_size: int = 32,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per input: path, predicted label, confidence, top-k (JSON), model version, the
    calibrated answer's label set (JSON), uncertain, unknown and calibration version (empty for
    an uncalibrated bundle), given label (if any) and an error reason for unreadable files
    (which are not predicted)."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(items), desc="classifying", unit="img", disable=not progress)
    for chunk in _chunks(items, batch_size):
        blobs, readable = [], []
        for item in chunk:
            try:
                blobs.append(item.path.read_bytes())
                readable.append(item)
            except OSError as exc:
                rows.append(
                    {
                        "path": str(item.path),
                        "label": item.label,
                        "error": "unreadable",
                        "error_message": str(exc),
                    }
                )
        done = classify_sync(blobs, predictor, limits, skip_invalid=True)
        for i, exc in done.errors.items():
            item = readable[i]
            rows.append(
                {
                    "path": str(item.path),
                    "label": item.label,
                    "error": exc.reason,
                    "error_message": str(exc),
                }
            )
        for i, pred in zip(done.indices, done.predictions):
            item = readable[i]
            rows.append(
                {
                    "path": str(item.path),
                    "label": item.label,
                    "predicted": pred.label,
                    "confidence": pred.confidence,
                    "top_k": json.dumps([[s.label, round(s.probability, 6)] for s in pred.top_k]),
                    "model_version": pred.model_version,
                    "label_set": None if pred.label_set is None else json.dumps(pred.label_set),
                    "uncertain": pred.uncertain,
                    "unknown": pred.unknown,
                    "calibration_version": pred.calibration_version,
                }
            )
        if done.images and on_batch is not None:
            on_batch(
                done.images,
                done.output.probs,
                done.file_sizes,
                done.output.embeddings,
                done.predictions,
            )
        bar.update(len(chunk))
    bar.close()
    order = {str(item.path): i for i, item in enumerate(items)}
    rows.sort(key=lambda r: order.get(r["path"], 0))
    return rows


def write_predictions(rows: list[dict[str, Any]], out_path: Path) -> Path:
    """Predictions CSV with a fixed column order (empty cells where a value does not apply)."""
    import pandas as pd

    columns = [
        "path",
        "label",
        "predicted",
        "confidence",
        "top_k",
        "model_version",
        "label_set",
        "uncertain",
        "unknown",
        "calibration_version",
        "error",
        "error_message",
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).reindex(columns=columns).to_csv(out_path, index=False)
    return out_path


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, class mix, mean confidence, the uncertain and unknown shares (None when
    uncalibrated) and, where labels were given, accuracy."""
    done = [r for r in rows if r.get("predicted")]

    def share(flag: str) -> float | None:
        values = [bool(r[flag]) for r in done if r.get(flag) is not None]
        return float(np.mean(values)) if values else None

    labelled = [r for r in done if r.get("label")]
    mix: dict[str, int] = {}
    for r in done:
        mix[r["predicted"]] = mix.get(r["predicted"], 0) + 1
    return {
        "images": len(rows),
        "predicted": len(done),
        "failed": len(rows) - len(done),
        "class_counts": mix,
        "mean_confidence": float(np.mean([r["confidence"] for r in done])) if done else None,
        "uncertain_rate": share("uncertain"),
        "unknown_rate": share("unknown"),
        "accuracy": float(np.mean([r["label"] == r["predicted"] for r in labelled]))
        if labelled
        else None,
    }
