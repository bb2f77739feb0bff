from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rxvision.config import ValidationConfig
from rxvision.data.loader import ImageDataset
from rxvision.data.sources import DatasetIndex, LabelMap, Sample, read_manifest, scan_imagefolder
from rxvision.data.validation import apply_policy, validate_dataset
from rxvision.errors import RxVisionError

LENIENT = {"min_resolution": 16, "min_images_per_class": 1, "max_imbalance_ratio": 100.0}


def _cfg(**kw) -> ValidationConfig:
    return ValidationConfig(**{**LENIENT, **kw})


def _only_problem(report, name: str, path: Path) -> None:
    assert report.failed_checks == [name], report.summary()
    assert report.checks[name].paths == [str(path)]


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_clean_folder_passes(imagefolder: Path) -> None:
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg())
    assert (
        report.passed
        and report.excluded == []
        and report.class_counts == {"alpha": 10, "beta": 10, "gamma": 10}
    )
    assert "all checks passed" in report.summary()


def test_truncated_jpeg_is_reported(imagefolder: Path) -> None:
    bad = _truncate(imagefolder / "alpha" / "03.jpg")
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(decode="full"))
    _only_problem(report, "corrupt", bad)
    assert "truncated" in report.checks["corrupt"].reasons[str(bad)]


def test_header_check_misses_jpeg_truncation_that_full_decode_finds(imagefolder: Path) -> None:
    _truncate(imagefolder / "alpha" / "03.jpg")
    assert validate_dataset(scan_imagefolder(imagefolder), _cfg(decode="header")).passed


def test_zero_byte_file_is_reported(imagefolder: Path) -> None:
    bad = imagefolder / "beta" / "empty.jpg"
    bad.write_bytes(b"")
    _only_problem(validate_dataset(scan_imagefolder(imagefolder), _cfg()), "zero_bytes", bad)


def test_text_file_named_jpg_is_not_an_image(imagefolder: Path) -> None:
    bad = imagefolder / "beta" / "notes.jpg"
    bad.write_text("this is not a picture")
    _only_problem(validate_dataset(scan_imagefolder(imagefolder), _cfg()), "not_an_image", bad)


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("LA", "PNG")],
)
def test_colour_modes_are_flagged_or_converted(
    imagefolder: Path, make_image, mode: str, fmt: str
) -> None:
    path = make_image(imagefolder / "gamma" / f"odd.{fmt.lower()}", seed=99, mode=mode, fmt=fmt)
    index = scan_imagefolder(imagefolder)
    flagged = validate_dataset(index, _cfg(color_mode_policy="flag"))
    _only_problem(flagged, "color_mode", path)
    converted = validate_dataset(index, _cfg(color_mode_policy="convert"))
    assert converted.passed and [p for ps in converted.converted.values() for p in ps] == [
        str(path)
    ]
    # a converted image must load for training: the loader converts it the same way
    x, _ = ImageDataset([Sample(path, "gamma")], LabelMap(index.classes))[0]
    assert x.shape[0] == 3


def test_tiny_image_is_below_min_resolution(imagefolder: Path, make_image) -> None:
    bad = make_image(imagefolder / "alpha" / "tiny.png", size=8, seed=77)
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(min_resolution=16))
    _only_problem(report, "low_resolution", bad)
    assert "8x8" in report.checks["low_resolution"].reasons[str(bad)]


def test_exact_duplicate_is_reported_and_the_first_copy_kept(imagefolder: Path) -> None:
    copy = imagefolder / "alpha" / "zz_copy.jpg"
    shutil.copy(imagefolder / "alpha" / "01.jpg", copy)
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(policy="skip"))
    _only_problem(report, "duplicate", copy)
    assert report.excluded == [copy]


def test_missing_file_in_manifest_is_reported(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "a.png", seed=1)
    (tmp_path / "m.csv").write_text("path,label\na.png,x\ngone.png,x\n")
    _only_problem(
        validate_dataset(read_manifest(tmp_path / "m.csv"), _cfg()),
        "missing_file",
        tmp_path / "gone.png",
    )


def test_same_image_in_two_splits_is_leakage(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "a.png", seed=1)
    make_image(tmp_path / "b.png", seed=2)
    shutil.copy(tmp_path / "a.png", tmp_path / "a_again.png")
    (tmp_path / "m.csv").write_text(
        "path,label,split\na.png,x,train\nb.png,x,train\na_again.png,x,test\n"
    )
    report = validate_dataset(read_manifest(tmp_path / "m.csv"), _cfg(policy="skip"))
    _only_problem(report, "leakage", tmp_path / "a_again.png")
    assert report.excluded == [tmp_path / "a_again.png"]


def test_unknown_label_is_reported_against_the_known_class_list(imagefolder: Path) -> None:
    index = scan_imagefolder(imagefolder, classes=["alpha", "beta"])
    report = validate_dataset(index, _cfg())
    assert report.failed_checks == ["unknown_label"]
    assert report.checks["unknown_label"].count == 10
    assert all("/gamma/" in p for p in report.checks["unknown_label"].paths)


def test_class_imbalance_past_the_ratio_is_reported(imagefolder: Path) -> None:
    for p in sorted((imagefolder / "gamma").glob("*.jpg"))[2:]:
        p.unlink()
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(max_imbalance_ratio=4.0))
    assert report.failed_checks == ["class_imbalance"]
    assert report.checks["class_imbalance"].details["ratio"] == 5.0
    with pytest.raises(RxVisionError, match="largest/smallest = 5.0 > 4.0"):
        apply_policy(scan_imagefolder(imagefolder), report, _cfg(max_imbalance_ratio=4.0))


def test_moderate_class_imbalance_is_a_warning_not_a_refusal(imagefolder: Path) -> None:
    for p in sorted((imagefolder / "gamma").glob("*.jpg"))[2:]:
        p.unlink()
    cfg = _cfg(warn_imbalance_ratio=3.0, max_imbalance_ratio=100.0)
    index = scan_imagefolder(imagefolder)
    report = validate_dataset(index, cfg)
    assert report.passed and report.failed_checks == []
    assert report.imbalance_ratio == 5.0
    assert report.warnings["class_imbalance"]["smallest"] == "gamma (2)"
    assert "imbalanced 5:1" in report.summary()
    assert (
        "Warnings" in report.to_html()
        and report.to_dict()["warnings"]["class_imbalance"]["ratio"] == 5.0
    )
    assert apply_policy(index, report, cfg) is index  # the run goes on with every image


def test_balanced_classes_carry_no_imbalance_warning(imagefolder: Path) -> None:
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(warn_imbalance_ratio=3.0))
    assert report.warnings == {} and report.imbalance_ratio == 1.0


def test_default_config_refuses_only_an_extreme_imbalance() -> None:
    cfg = ValidationConfig()
    assert cfg.warn_imbalance_ratio < 14 < cfg.max_imbalance_ratio  # a 14:1 graded set runs
    assert cfg.max_imbalance_ratio <= 100


def test_extreme_imbalance_refusal_hints_at_labels_and_the_ratio_key(imagefolder: Path) -> None:
    for p in sorted((imagefolder / "gamma").glob("*.jpg"))[2:]:
        p.unlink()
    cfg = _cfg(max_imbalance_ratio=4.0)
    report = validate_dataset(scan_imagefolder(imagefolder), cfg)
    with pytest.raises(RxVisionError) as err:
        apply_policy(scan_imagefolder(imagefolder), report, cfg)
    assert "data.validation.max_imbalance_ratio" in err.value.hint and "labels" in err.value.hint


def test_class_with_too_few_images_is_reported_and_dropped_under_skip(imagefolder: Path) -> None:
    for p in sorted((imagefolder / "gamma").glob("*.jpg"))[3:]:
        p.unlink()
    index = scan_imagefolder(imagefolder)
    report = validate_dataset(index, _cfg(min_images_per_class=5, policy="skip"))
    assert report.failed_checks == ["too_few_images"]
    assert report.checks["too_few_images"].details["classes"] == {"gamma": 3}
    kept = apply_policy(index, report, _cfg(min_images_per_class=5, policy="skip"))
    assert kept.classes == ["alpha", "beta"] and len(kept) == 20


def test_fail_policy_names_the_files_and_the_fix(imagefolder: Path) -> None:
    bads = []
    for i in range(12):
        bad = imagefolder / "beta" / f"empty{i:02d}.jpg"
        bad.write_bytes(b"")
        bads.append(bad)
    index = scan_imagefolder(imagefolder)
    report = validate_dataset(index, _cfg())
    with pytest.raises(RxVisionError) as err:
        apply_policy(index, report, _cfg())
    msg = str(err.value)
    assert "zero_bytes: 12 file(s)" in msg and str(bads[0]) in msg and "(+2 more)" in msg
    assert str(bads[11]) not in msg and "policy=skip" in msg


def test_skip_policy_excludes_and_lists_every_bad_file(imagefolder: Path, make_image) -> None:
    (imagefolder / "alpha" / "empty.jpg").write_bytes(b"")
    (imagefolder / "beta" / "text.png").write_text("nope")
    _truncate(imagefolder / "gamma" / "05.jpg")
    index = scan_imagefolder(imagefolder)
    cfg = _cfg(policy="skip")
    report = validate_dataset(index, cfg)
    assert len(report.excluded) == 3 and not report.passed
    kept = apply_policy(index, report, cfg)
    assert len(kept) == 29 and not set(report.excluded) & {s.path for s in kept.samples}
    assert "policy skip excludes 3 images" in report.summary()


def test_report_serialises_to_json_and_self_contained_html(imagefolder: Path) -> None:
    (imagefolder / "alpha" / "empty.jpg").write_bytes(b"")
    (imagefolder / "alpha" / "notes.txt").write_text("x")
    report = validate_dataset(scan_imagefolder(imagefolder), _cfg(policy="skip"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and data["checks"]["zero_bytes"]["count"] == 1
    assert data["ignored_files"] == [str(imagefolder / "alpha" / "notes.txt")]
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and "empty.jpg" in page and "notes.txt" in page
    assert "<script" not in page and "http" not in page


def test_validation_fills_the_hashes_the_split_reuses(imagefolder: Path) -> None:
    index = scan_imagefolder(imagefolder)
    validate_dataset(index, _cfg())
    assert len(index._hashes) == 30 and all(index._hashes.values())


def test_skip_that_leaves_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jpg").write_bytes(b"")
    index = scan_imagefolder(tmp_path)
    report = validate_dataset(index, _cfg(policy="skip"))
    with pytest.raises(RxVisionError, match="excluded every image"):
        apply_policy(index, report, _cfg(policy="skip"))


def test_index_with_no_split_column_never_reports_leakage(imagefolder: Path) -> None:
    shutil.copy(imagefolder / "alpha" / "01.jpg", imagefolder / "beta" / "same.jpg")
    report = validate_dataset(
        DatasetIndex(scan_imagefolder(imagefolder).samples, ["alpha", "beta", "gamma"]), _cfg()
    )
    assert report.failed_checks == ["duplicate"]
    assert (
        "labels differ"
        in report.checks["duplicate"].reasons[str(imagefolder / "beta" / "same.jpg")]
    )
