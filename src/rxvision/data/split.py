"""Stratified, seeded, leakage-free train/val/test split and the dataset fingerprint."""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from rxvision.config import SplitConfig
from rxvision.data.sources import SPLIT_NAMES, DatasetIndex, LabelMap, Sample
from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)


@dataclass
class DatasetSplits:
    """The three splits (lists of Sample), the class list (label-map order) and the
    fingerprint of the dataset they came from (for lineage)."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]
    fingerprint: str = ""
    seed: int | None = None
    source: str = field(default="auto", compare=False)  # "auto" or "manifest"

    @property
    def label_map(self) -> LabelMap:
        return LabelMap(self.classes)

    def as_dict(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split, images per class (all classes listed)."""
        out = {}
        for name, samples in self.as_dict().items():
            found = Counter(s.label for s in samples)
            out[name] = {c: found.get(c, 0) for c in self.classes}
        return out

    def summary(self) -> str:
        return (
            f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test images, "
            f"{len(self.classes)} classes, fingerprint {self.fingerprint[:12]}"
        )


def fingerprint(index: DatasetIndex) -> str:
    """sha256 over the sorted (relative path, label, content sha256) of every sample: the same
    files and labels give the same value on any machine and in any parent directory."""
    hashes = index.content_hashes()
    rows = sorted(
        (index.relative(s.path), s.label, hashes.get(s.path) or "unreadable") for s in index.samples
    )
    digest = hashlib.sha256()
    for rel, label, content in rows:
        digest.update(f"{rel}\t{label}\t{content}\n".encode())
    return digest.hexdigest()


def _allocate(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of n groups go to val and test: rounded shares, at least one each when the
    class has 3+ groups, and always at least one left for train."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    while n_val + n_test >= n and (n_val or n_test):
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def stratified_split(index: DatasetIndex, cfg: SplitConfig) -> DatasetSplits:
    """Split per class with ``cfg.seed``. Identical files (same content hash) always land in
    the same split, so duplicates cannot leak between train and test. A manifest that assigns
    every sample a split is honoured as given (validation reports leakage in it)."""
    if not index.samples:
        raise RxVisionError(
            "cannot split an empty dataset", "check the data source and the validation report"
        )
    fp = fingerprint(index)
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    if all(s.split is not None for s in index.samples):
        for s in index.samples:
            splits[str(s.split)].append(s)
        source = "manifest"
    else:
        # sklearn's splitters need >= 2 members per class and know no duplicate groups; tiny
        # classes and grouping by content hash are handled here instead.
        hashes = index.content_hashes()
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in index.samples:
            groups[hashes.get(s.path) or f"path:{s.path}"].append(s)
        by_class: dict[str, list[str]] = defaultdict(list)
        for key, members in groups.items():
            label = Counter(m.label for m in members).most_common(1)[0][0]
            by_class[label].append(key)
        for label in sorted(by_class):
            keys = sorted(by_class[label])
            # a per-class stream: adding a class does not reshuffle the others
            rng = np.random.default_rng([cfg.seed, zlib.crc32(label.encode())])
            order = [keys[i] for i in rng.permutation(len(keys))]
            n_val, n_test = _allocate(len(order), cfg.val_fraction, cfg.test_fraction)
            for i, key in enumerate(order):
                name = "val" if i < n_val else "test" if i < n_val + n_test else "train"
                splits[name].extend(groups[key])
        source = "auto"
    for name in SPLIT_NAMES:
        splits[name].sort(key=lambda s: (s.label, str(s.path)))
    if not splits["train"]:
        raise RxVisionError(
            "the train split is empty", "lower data.split.val_fraction/test_fraction or add images"
        )
    for name in ("val", "test"):
        if not splits[name]:
            log.warning("the %s split is empty (%d images in total)", name, len(index))
    result = DatasetSplits(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        classes=list(index.classes),
        fingerprint=fp,
        seed=cfg.seed if source == "auto" else None,
        source=source,
    )
    log.info("split: %s", result.summary())
    return result
