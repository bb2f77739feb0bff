"""Where images come from: an ImageFolder, a CSV manifest or the synthetic pill generator,
all turned into one :class:`DatasetIndex` (a list of labelled file paths)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rxvision.config import DataConfig
from rxvision.data.images import IMAGE_EXTENSIONS, hash_files
from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One labelled image file; ``split`` is set when a manifest assigns it."""

    path: Path
    label: str
    split: str | None = None


@dataclass
class DatasetIndex:
    """The samples of a dataset and its class list (sorted; the label map's order).

    ``root`` is the directory paths are made relative to for the fingerprint; ``ignored`` lists
    files the source skipped (not image files), so nothing is dropped silently.
    """

    samples: list[Sample]
    classes: list[str]
    root: Path | None = None
    ignored: list[Path] = field(default_factory=list)
    _hashes: dict[Path, str | None] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        """Images per class, every known class listed (0 when absent)."""
        found = Counter(s.label for s in self.samples)
        return {c: found.get(c, 0) for c in self.classes} | {
            k: v for k, v in sorted(found.items()) if k not in self.classes
        }

    def content_hashes(self, threads: int = 8) -> dict[Path, str | None]:
        """sha256 per sample path (None if unreadable); computed once and kept."""
        missing = [s.path for s in self.samples if s.path not in self._hashes]
        if missing:
            self._hashes.update(hash_files(missing, threads=threads))
        return self._hashes

    def remember_hashes(self, hashes: dict[Path, str | None]) -> None:
        """Keep content hashes computed elsewhere (validation) for the split and fingerprint."""
        self._hashes.update(hashes)

    def with_samples(self, samples: Iterable[Sample]) -> DatasetIndex:
        """A copy holding ``samples`` (same classes/root; hashes reused)."""
        return replace(
            self, samples=list(samples), ignored=list(self.ignored), _hashes=dict(self._hashes)
        )

    def relative(self, path: Path) -> str:
        """Path relative to the dataset root, POSIX style (stable across machines)."""
        root = self.root if self.root is not None else _common_root(self.samples)
        try:
            return Path(os.path.relpath(path, root)).as_posix()
        except ValueError:  # other drive on Windows
            return Path(path).as_posix()


def _common_root(samples: list[Sample]) -> Path:
    if not samples:
        return Path(".")
    parents = {str(Path(s.path).resolve().parent) for s in samples}
    return Path(os.path.commonpath(sorted(parents)))


class LabelMap:
    """Class name <-> index, saved with every model so predictions map back to names."""

    def __init__(self, classes: Iterable[str]) -> None:
        self.classes: list[str] = list(classes)
        if not self.classes:
            raise RxVisionError("a label map needs at least one class", "check the dataset source")
        dupes = [c for c, n in Counter(self.classes).items() if n > 1]
        if dupes:
            raise RxVisionError(f"duplicate class names in label map: {dupes}")
        self._index = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.classes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.classes == self.classes

    def __repr__(self) -> str:
        return f"LabelMap({self.classes!r})"

    def index(self, label: str) -> int:
        try:
            return self._index[label]
        except KeyError:
            raise RxVisionError(
                f"label '{label}' is not in the label map ({len(self)} classes)",
                "validate the dataset (unknown_label check) or add the class to data.classes",
            ) from None

    def label(self, index: int) -> str:
        return self.classes[index]

    def to_json(self) -> str:
        return json.dumps({"classes": self.classes}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabelMap:
        try:
            data = json.loads(text)
            classes = data["classes"] if isinstance(data, dict) else data
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RxVisionError(
                f"not a label map JSON: {exc}", 'expected {"classes": [...]}'
            ) from None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise RxVisionError("label map 'classes' must be a list of strings")
        return cls(classes)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> LabelMap:
        path = Path(path)
        if not path.is_file():
            raise RxVisionError(f"label map file not found: {path}")
        return cls.from_json(path.read_text())


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def scan_imagefolder(root: Path, classes: list[str] | None = None) -> DatasetIndex:
    """One subfolder per class; image files found recursively inside each. Other files are
    listed in ``ignored`` (and logged), never dropped silently."""
    root = Path(root).expanduser()
    if not root.exists():
        raise RxVisionError(
            f"dataset folder not found: {root}",
            "set data.path to an existing ImageFolder directory",
        )
    if not root.is_dir():
        raise RxVisionError(
            f"data.path {root} is a file, not a folder",
            "for a CSV manifest set data.source=csv; "
            "for an ImageFolder point data.path at the folder",
        )
    samples: list[Sample] = []
    ignored: list[Path] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p))
    ignored.extend(sorted(p for p in root.iterdir() if p.is_file() and not _is_hidden(p)))
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or _is_hidden(path):
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(Sample(path=path, label=class_dir.name))
            else:
                ignored.append(path)
    if not samples:
        raise RxVisionError(
            f"no images found in {root}",
            "an ImageFolder needs one subfolder per class holding image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))})",
        )
    if ignored:
        log.warning(
            "%d non-image files ignored under %s (first: %s)", len(ignored), root, ignored[0]
        )
    found = sorted({s.label for s in samples})
    return DatasetIndex(
        samples=samples, classes=list(classes) if classes else found, root=root, ignored=ignored
    )


def read_manifest(path: Path, classes: list[str] | None = None) -> DatasetIndex:
    """CSV with columns ``path,label[,split]``; relative paths are relative to the CSV's folder.

    Files are not opened here: missing ones are reported by validation (``missing_file``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise RxVisionError(
            f"manifest not found: {path}",
            "set data.path to a CSV file with columns path,label[,split]",
        )
    base = path.parent
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise RxVisionError(
                f"manifest {path} lacks column(s) {', '.join(missing)} "
                f"(found: {', '.join(columns) or 'none'})",
                "the first row must be a header with path,label and optionally split",
            )
        reader.fieldnames = columns
        has_split = "split" in columns
        samples: list[Sample] = []
        problems: list[str] = []
        seen: dict[Path, int] = {}
        for line, row in enumerate(reader, start=2):
            raw_path = (row.get("path") or "").strip()
            label = (row.get("label") or "").strip()
            split = (row.get("split") or "").strip() or None
            if not raw_path:
                problems.append(f"line {line}: empty path")
                continue
            if not label:
                problems.append(f"line {line}: empty label for {raw_path}")
                continue
            if split is not None and split not in SPLIT_NAMES:
                problems.append(
                    f"line {line}: split '{split}' is not one of {', '.join(SPLIT_NAMES)}"
                )
                continue
            file_path = Path(raw_path).expanduser()
            if not file_path.is_absolute():
                file_path = base / file_path
            if file_path in seen:  # one file, one label: a second row is a manifest bug
                problems.append(f"line {line}: {raw_path} already listed on line {seen[file_path]}")
                continue
            seen[file_path] = line
            samples.append(Sample(path=file_path, label=label, split=split))
    if problems:
        shown = "; ".join(problems[:10]) + (
            f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        )
        raise RxVisionError(
            f"manifest {path} has {len(problems)} bad row(s): {shown}", "fix those rows"
        )
    if not samples:
        raise RxVisionError(
            f"manifest {path} has no rows", "add one row per image: path,label[,split]"
        )
    if has_split and any(s.split is None for s in samples):
        raise RxVisionError(
            f"manifest {path} has a split column but some rows leave it empty",
            "give every row a split (train/val/test) or drop the column to split automatically",
        )
    found = sorted({s.label for s in samples})
    root = Path(
        os.path.commonpath([str(s.path.resolve().parent) for s in samples] + [str(base.resolve())])
    )
    return DatasetIndex(samples=samples, classes=list(classes) if classes else found, root=root)


def default_cache_dir() -> Path:
    """$RXVISION_HOME/cache when RXVISION_HOME is set, else ~/.cache/rxvision."""
    home = os.environ.get("RXVISION_HOME")
    return Path(home).expanduser() / "cache" if home else Path.home() / ".cache" / "rxvision"


def resolve_cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir is not None else default_cache_dir()


def load_source(cfg: DataConfig) -> DatasetIndex:
    """The configured source as a DatasetIndex; the synthetic source generates (or reuses) an
    ImageFolder in the cache first."""
    if cfg.source == "synthetic":
        from rxvision.data.synthetic import generate_synthetic_pills

        syn = cfg.synthetic
        folder = generate_synthetic_pills(
            resolve_cache_dir(cfg) / "synthetic",
            num_classes=syn.num_classes,
            images_per_class=syn.images_per_class,
            image_size=syn.image_size,
            seed=syn.seed,
            workers=syn.workers,
        )
        return scan_imagefolder(folder, cfg.classes)
    if cfg.path is None:  # the config validator already demands it; kept for direct callers
        raise RxVisionError(f"data.path is required when data.source is '{cfg.source}'")
    if cfg.source == "imagefolder":
        return scan_imagefolder(Path(cfg.path), cfg.classes)
    return read_manifest(Path(cfg.path), cfg.classes)
