"""Dataset integrity checks with a structured report, and the policy that acts on it.

Every problem is counted and its files are listed; under policy ``fail`` the run stops with a
message naming the files, under ``skip`` they are excluded and listed. Nothing is dropped
silently: even files the source ignored (not images) and colour modes that were converted
appear in the report.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from rxvision.config import ValidationConfig
from rxvision.data.images import RGB_MODES, file_sha256
from rxvision.data.sources import SPLIT_NAMES, DatasetIndex, Sample
from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

# name -> what it means (shown in the report). Order = report order.
CHECKS: dict[str, str] = {
    "missing_file": "the file listed does not exist",
    "zero_bytes": "the file is empty",
    "not_an_image": "the file is not an image PIL can identify",
    "corrupt": "the image is damaged or truncated (found by decoding it)",
    "color_mode": "the image is not RGB (grayscale, alpha, palette, CMYK, 16-bit, ...)",
    "low_resolution": "width or height is below min_resolution",
    "unknown_label": "the label is not in the known class list",
    "duplicate": "exact copy (same content hash) of another file in the same split",
    "leakage": "the same image appears in two splits",
    "too_few_images": "the class has fewer than min_images_per_class images",
    "class_imbalance": "largest / smallest class is above max_imbalance_ratio",
}
FIX_HINTS: dict[str, str] = {
    "missing_file": "restore the files or remove their rows from the manifest",
    "zero_bytes": "re-copy or delete the empty files",
    "not_an_image": "delete the files or give them their real extension outside the dataset",
    "corrupt": "re-export or delete the damaged images",
    "color_mode": "convert them to RGB, or set data.validation.color_mode_policy=convert",
    "low_resolution": "replace them with larger images or lower data.validation.min_resolution",
    "unknown_label": "fix the labels or add the classes to data.classes",
    "duplicate": "delete the extra copies",
    "leakage": "keep each image in one split only "
    "(or drop the split column to split automatically)",
    "too_few_images": "add images to those classes or lower data.validation.min_images_per_class",
    "class_imbalance": "check the labels of the smallest class and add images to it; "
    "if the classes "
    "really are that rare, raise data.validation.max_imbalance_ratio (checkpoints are chosen by "
    "macro-F1 and the gate compares the model against always answering the majority class)",
}
# Findings that do not stop a run: reported, logged and shown in the HTML page.
WARNINGS: dict[str, str] = {
    "class_imbalance": "largest / smallest class is above warn_imbalance_ratio: accuracy alone "
    "flatters a model that favours the large classes; read macro-F1 and the per-class table",
}
_SPLIT_RANK = {name: i for i, name in enumerate(SPLIT_NAMES)}


@dataclass
class CheckResult:
    """One check: how many findings and which files (with a reason each)."""

    name: str
    description: str
    paths: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Files found, or for class-level checks the number of classes (imbalance: 0 or 1)."""
        return int(self.details["count"]) if "count" in self.details else len(self.paths)

    @property
    def failed(self) -> bool:
        return self.count > 0

    def add(self, path: Path | str, reason: str = "") -> None:
        key = str(path)
        self.paths.append(key)
        if reason:
            self.reasons[key] = reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "failed": self.failed,
            "description": self.description,
            "paths": list(self.paths),
            "reasons": dict(self.reasons),
            "details": dict(self.details),
        }


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_dataset`. ``passed`` means no check found anything;
    ``excluded`` holds the files policy ``skip`` removes (empty under ``fail``)."""

    total_images: int
    classes: list[str]
    policy: str
    color_mode_policy: str
    decode: str
    checks: dict[str, CheckResult]
    class_counts: dict[str, int]
    converted: dict[str, list[str]] = field(default_factory=dict)  # mode -> paths (convert policy)
    ignored_files: list[str] = field(default_factory=list)
    excluded: list[Path] = field(default_factory=list)
    dropped_classes: list[str] = field(default_factory=list)
    # largest / smallest class among classes with images (1.0 with fewer than two such classes)
    imbalance_ratio: float = 1.0
    # name (a key of WARNINGS) -> details; none of them fails the report
    warnings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(c.failed for c in self.checks.values())

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, c in self.checks.items() if c.failed]

    def summary(self) -> str:
        """One line for logs and run metadata."""
        head = f"{self.total_images} images, {len(self.classes)} classes"
        if "class_imbalance" in self.warnings:
            head += f" (imbalanced {self.imbalance_ratio:g}:1)"
        if self.passed:
            conv = sum(len(v) for v in self.converted.values())
            return f"{head}: all checks passed" + (f" ({conv} converted to RGB)" if conv else "")
        problems = ", ".join(f"{n} {self.checks[n].count}" for n in self.failed_checks)
        tail = (
            f"; policy skip excludes {len(self.excluded)} images"
            if self.policy == "skip"
            else "; policy fail"
        )
        return f"{head}: problems found ({problems}){tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "total_images": self.total_images,
            "num_classes": len(self.classes),
            "classes": list(self.classes),
            "policy": self.policy,
            "color_mode_policy": self.color_mode_policy,
            "decode": self.decode,
            "class_counts": dict(self.class_counts),
            "checks": {name: c.to_dict() for name, c in self.checks.items()},
            "converted": {mode: list(p) for mode, p in self.converted.items()},
            "ignored_files": list(self.ignored_files),
            "excluded": [str(p) for p in self.excluded],
            "dropped_classes": list(self.dropped_classes),
            "imbalance_ratio": self.imbalance_ratio,
            "warnings": {name: dict(d) for name, d in self.warnings.items()},
            "seconds": round(self.seconds, 3),
        }

    def to_html(self, max_paths: int = 50) -> str:
        """A self-contained HTML page (inline CSS, no scripts or external assets)."""
        e = html.escape
        rows = []
        for name, c in self.checks.items():
            status = (
                '<span class="bad">problem</span>' if c.failed else '<span class="ok">ok</span>'
            )
            rows.append(
                f"<tr><td><code>{e(name)}</code></td><td>{status}</td><td class='n'>{c.count}</td>"
                f"<td>{e(c.description)}</td></tr>"
            )
        sections = []
        for name, c in self.checks.items():
            if not c.failed:
                continue
            items = "".join(
                f"<li><code>{e(p)}</code>"
                f"{' &mdash; ' + e(c.reasons[p]) if p in c.reasons else ''}</li>"
                for p in c.paths[:max_paths]
            )
            more = (
                f"<p>... and {len(c.paths) - max_paths} more</p>"
                if len(c.paths) > max_paths
                else ""
            )
            extra = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in c.details.items())
            sections.append(
                f"<h3><code>{e(name)}</code> ({c.count})</h3>"
                f"<p>{e(c.description)}. Fix: {e(FIX_HINTS[name])}.</p>"
                + (f"<ul>{extra}</ul>" if extra else "")
                + (f"<ol>{items}</ol>{more}" if items else "")
            )
        top = max(self.class_counts.values(), default=1) or 1
        bars = "".join(
            f"<tr><td>{e(cls)}</td><td class='n'>{n}</td>"
            f"<td><div class='bar' style='width:{300 * n / top:.0f}px'>"
            f"</div></td></tr>"
            for cls, n in self.class_counts.items()
        )
        lists = []
        for title, paths in (
            ("Excluded by policy skip", [str(p) for p in self.excluded]),
            ("Ignored by the source (not image files)", self.ignored_files),
            *((f"Converted to RGB from {mode}", p) for mode, p in self.converted.items()),
        ):
            if paths:
                shown = "".join(f"<li><code>{e(p)}</code></li>" for p in paths[:max_paths])
                more = (
                    f"<p>... and {len(paths) - max_paths} more</p>"
                    if len(paths) > max_paths
                    else ""
                )
                lists.append(f"<h3>{e(title)} ({len(paths)})</h3><ol>{shown}</ol>{more}")
        warned = "".join(
            f"<li><code>{e(name)}</code>: {e(WARNINGS[name])} "
            f"({e(', '.join(f'{k}: {v}' for k, v in d.items()))})</li>"
            for name, d in self.warnings.items()
        )
        verdict = "passed" if self.passed else "problems found"
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>RxVision data validation: {verdict}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
.n{{text-align:right}}.ok{{color:#17701f;font-weight:bold}}.bad{{color:#b00020;font-weight:bold}}
.bar{{background:#4a78c2;height:.9em}}code{{font-size:.9em}}li{{margin:.1em 0}}
</style></head><body>
<h1>Data validation: <span class="{"ok" if self.passed else "bad"}">{verdict}</span></h1>
<p>{e(self.summary())}</p>
<p>Policy <code>{e(self.policy)}</code>, colour modes <code>{e(self.color_mode_policy)}</code>,
decode <code>{e(self.decode)}</code>, {self.seconds:.2f} s.</p>
<h2>Checks</h2>
<table><tr><th>check</th><th>status</th><th>count</th><th>meaning</th></tr>{"".join(rows)}</table>
{f"<h2>Warnings</h2><ul>{warned}</ul>" if warned else ""}
<h2>Images per class</h2><table><tr><th>class</th><th>images</th><th></th></tr>{bars}</table>
{"<h2>Findings</h2>" + "".join(sections) if sections else ""}
{"".join(lists)}
</body></html>
"""


@dataclass
class _FileInfo:
    """What one pass over a file found out."""

    exists: bool = True
    size: int = 0
    sha256: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None  # one of the per-file check names
    reason: str = ""


def _inspect(path: Path, full_decode: bool) -> _FileInfo:
    """stat, hash and open one file; ``full_decode`` decodes every pixel (finds truncation)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _FileInfo(exists=False, problem="missing_file", reason="no such file")
    except OSError as exc:
        return _FileInfo(exists=False, problem="missing_file", reason=str(exc))
    if size == 0:
        return _FileInfo(size=0, problem="zero_bytes", reason="0 bytes")
    info = _FileInfo(size=size)
    try:
        info.sha256 = file_sha256(path)
    except OSError as exc:
        info.problem, info.reason = "missing_file", f"unreadable: {exc}"
        return info
    try:
        with Image.open(path) as img:
            info.mode, (info.width, info.height) = img.mode, img.size
            if full_decode:
                img.load()
            else:
                img.verify()
    except UnidentifiedImageError:
        info.problem, info.reason = "not_an_image", "not a recognised image format"
    except Image.DecompressionBombError as exc:
        info.problem, info.reason = "corrupt", f"too many pixels: {exc}"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        info.problem, info.reason = "corrupt", f"{type(exc).__name__}: {exc}"
    return info


def _default_threads() -> int:
    return max(2, min(16, (os.cpu_count() or 1) * 2))


def validate_dataset(
    index: DatasetIndex, cfg: ValidationConfig, threads: int | None = None
) -> ValidationReport:
    """Run every check over ``index`` (I/O and decoding in a thread pool) and decide, per
    ``cfg.policy``, which files ``skip`` would exclude."""
    start = time.perf_counter()
    checks = {name: CheckResult(name, desc) for name, desc in CHECKS.items()}
    samples = index.samples
    unique_paths = list(dict.fromkeys(s.path for s in samples))
    with ThreadPoolExecutor(max_workers=threads or _default_threads()) as pool:
        infos = dict(
            zip(
                unique_paths,
                pool.map(lambda p: _inspect(Path(p), cfg.decode == "full"), unique_paths),
            )
        )
    index.remember_hashes(
        {p: i.sha256 for p, i in infos.items()}
    )  # the split and fingerprint reuse them

    bad: set[Path] = set()  # samples excluded under skip
    converted: dict[str, list[str]] = defaultdict(list)
    for path in unique_paths:
        info = infos[path]
        if info.problem:
            checks[info.problem].add(path, info.reason)
            bad.add(path)
            continue
        if info.mode not in RGB_MODES:
            if cfg.color_mode_policy == "flag":
                checks["color_mode"].add(path, f"mode {info.mode}")
                bad.add(path)
            else:
                converted[str(info.mode)].append(str(path))
        if min(info.width, info.height) < cfg.min_resolution:
            checks["low_resolution"].add(path, f"{info.width}x{info.height} < {cfg.min_resolution}")
            bad.add(path)

    known = set(index.classes)
    for s in samples:
        if s.label not in known:
            checks["unknown_label"].add(s.path, f"label '{s.label}'")
            bad.add(s.path)

    # duplicates within a split (or without splits) and the same content across splits
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        sha = infos[s.path].sha256
        if sha is not None and not infos[s.path].problem:
            by_hash[sha].append(s)
    for sha, members in by_hash.items():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda s: (_SPLIT_RANK.get(s.split or "", -1), str(s.path)))
        splits_seen = {m.split for m in ordered if m.split is not None}
        if len(splits_seen) > 1:
            keep_split = ordered[0].split
            for m in ordered:
                if m.split != keep_split:
                    checks["leakage"].add(
                        m.path, f"in {m.split}; same content as {ordered[0].path} in {keep_split}"
                    )
                    bad.add(m.path)
        first_per_split: dict[str | None, Sample] = {}
        for m in ordered:
            if m.split in first_per_split and m.path not in bad:
                original = first_per_split[m.split]
                checks["duplicate"].add(
                    m.path,
                    f"copy of {original.path}"
                    + (
                        f" (labels differ: {original.label} / {m.label})"
                        if original.label != m.label
                        else ""
                    ),
                )
                bad.add(m.path)
            first_per_split.setdefault(m.split, m)

    # class-level checks on what survives the per-file checks
    survivors = [s for s in samples if s.path not in bad]
    counts_all = Counter(s.label for s in survivors)
    class_counts = {c: counts_all.get(c, 0) for c in index.classes}
    dropped: list[str] = []
    small = {c: n for c, n in class_counts.items() if n < cfg.min_images_per_class}
    if small:
        checks["too_few_images"].details = {
            "min_images_per_class": cfg.min_images_per_class,
            "classes": dict(small),
            "count": len(small),
        }
        for s in survivors:
            if s.label in small:
                checks["too_few_images"].add(s.path, f"class '{s.label}' has {small[s.label]}")
        dropped = sorted(small)
    ratio, warnings = 1.0, {}
    present = [n for n in class_counts.values() if n > 0]
    if len(present) >= 2:
        ratio = round(max(present) / min(present), 2)
        largest = max(class_counts, key=lambda c: class_counts[c])
        smallest = min(
            (c for c in class_counts if class_counts[c] > 0), key=lambda c: class_counts[c]
        )
        sizes = {
            "ratio": ratio,
            "largest": f"{largest} ({class_counts[largest]})",
            "smallest": f"{smallest} ({class_counts[smallest]})",
        }
        if ratio > cfg.max_imbalance_ratio:
            checks["class_imbalance"].details = {
                "count": 1,
                **sizes,
                "max_imbalance_ratio": cfg.max_imbalance_ratio,
            }
        elif ratio > cfg.warn_imbalance_ratio:
            warnings["class_imbalance"] = {
                **sizes,
                "warn_imbalance_ratio": cfg.warn_imbalance_ratio,
            }
            log.warning(
                "data validation: classes are imbalanced %g:1 (largest %s, smallest %s); "
                "judge the model by macro-F1",
                ratio,
                sizes["largest"],
                sizes["smallest"],
            )

    excluded: list[Path] = []
    if cfg.policy == "skip":
        drop = set(bad) | {s.path for s in survivors if s.label in small}
        excluded = [p for p in unique_paths if p in drop]
    report = ValidationReport(
        total_images=len(samples),
        classes=list(index.classes),
        policy=cfg.policy,
        color_mode_policy=cfg.color_mode_policy,
        decode=cfg.decode,
        checks=checks,
        class_counts=class_counts,
        converted=dict(converted),
        ignored_files=[str(p) for p in index.ignored],
        excluded=excluded,
        dropped_classes=dropped if cfg.policy == "skip" else [],
        imbalance_ratio=ratio,
        warnings=warnings,
        seconds=time.perf_counter() - start,
    )
    log.info("data validation: %s (%.2fs)", report.summary(), report.seconds)
    return report


def _failure_message(report: ValidationReport, shown: int = 10) -> tuple[str, str]:
    parts, hints = [], []
    for name in report.failed_checks:
        c = report.checks[name]
        if name == "class_imbalance":
            d = c.details
            parts.append(
                f"class_imbalance: largest/smallest = {d['ratio']} > {d['max_imbalance_ratio']} "
                f"(largest {d['largest']}, smallest {d['smallest']})"
            )
        elif name == "too_few_images":
            classes = ", ".join(f"{k} ({v})" for k, v in c.details["classes"].items())
            parts.append(f"too_few_images: {classes} below {c.details['min_images_per_class']}")
        else:
            listed = ", ".join(c.paths[:shown]) + (
                f" (+{len(c.paths) - shown} more)" if len(c.paths) > shown else ""
            )
            parts.append(f"{name}: {len(c.paths)} file(s): {listed}")
        hints.append(FIX_HINTS[name])
    return "; ".join(parts), "; ".join(
        hints
    ) + "; or set data.validation.policy=skip to exclude them"


def apply_policy(
    index: DatasetIndex, report: ValidationReport, cfg: ValidationConfig
) -> DatasetIndex:
    """Policy ``fail``: raise an RxVisionError naming the offending files (first 10 per check
    and a count). Policy ``skip``: return the index without the excluded files (and without
    classes that had too few images)."""
    if report.passed:
        return index
    problems, hint = _failure_message(report)
    if cfg.policy == "fail":
        raise RxVisionError(f"data validation failed: {problems}", hint)
    drop = set(report.excluded)
    kept = [s for s in index.samples if s.path not in drop]
    if not kept:
        raise RxVisionError(f"data validation excluded every image: {problems}", hint)
    out = index.with_samples(kept)
    if report.dropped_classes:
        out.classes = [c for c in index.classes if c not in set(report.dropped_classes)]
        log.warning(
            "data validation: classes dropped (too few images): %s",
            ", ".join(report.dropped_classes),
        )
    log.warning(
        "data validation: policy skip excluded %d of %d images (%s)",
        len(drop),
        len(index),
        problems[:500],
    )
    return out
