from __future__ import annotations

from pathlib import Path

import pytest

from rxvision.config import DataConfig, load_config
from rxvision.data.sources import LabelMap, load_source, read_manifest, scan_imagefolder
from rxvision.errors import RxVisionError


def test_imagefolder_lists_every_image_with_its_folder_label(imagefolder: Path) -> None:
    index = load_source(DataConfig(source="imagefolder", path=imagefolder))
    assert index.classes == ["alpha", "beta", "gamma"]
    assert len(index) == 30
    assert index.counts() == {"alpha": 10, "beta": 10, "gamma": 10}
    assert all(s.path.parent.name == s.label for s in index.samples)


def test_imagefolder_non_image_files_are_listed_not_dropped_silently(imagefolder: Path) -> None:
    (imagefolder / "alpha" / "notes.txt").write_text("hello")
    (imagefolder / "README.md").write_text("top level")
    index = scan_imagefolder(imagefolder)
    assert len(index) == 30
    assert {p.name for p in index.ignored} == {"notes.txt", "README.md"}


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(RxVisionError, match="no images found"):
        scan_imagefolder(tmp_path / "empty")


def test_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="nowhere"):
        load_source(DataConfig(source="imagefolder", path=tmp_path / "nowhere"))


def test_manifest_resolves_relative_paths_and_reads_split(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "img" / "a.png", seed=1)
    make_image(tmp_path / "img" / "b.png", seed=2)
    (tmp_path / "m.csv").write_text("path,label,split\nimg/a.png,x,train\nimg/b.png,y,test\n")
    index = load_source(DataConfig(source="csv", path=tmp_path / "m.csv"))
    assert [s.path for s in index.samples] == [
        tmp_path / "img" / "a.png",
        tmp_path / "img" / "b.png",
    ]
    assert [s.split for s in index.samples] == ["train", "test"]
    assert index.classes == ["x", "y"]


def test_manifest_missing_columns_are_named(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(RxVisionError, match="lacks column\\(s\\) path"):
        read_manifest(tmp_path / "m.csv")


def test_manifest_bad_rows_are_named_with_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label,split\n,x,train\na.png,,train\nb.png,y,holdout\n")
    with pytest.raises(RxVisionError) as err:
        read_manifest(tmp_path / "m.csv")
    msg = str(err.value)
    assert "line 2: empty path" in msg and "line 3: empty label" in msg and "'holdout'" in msg


def test_manifest_listing_a_file_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\na.png,x\nb.png,x\na.png,y\n")
    with pytest.raises(RxVisionError, match="line 4: a.png already listed on line 2"):
        read_manifest(tmp_path / "m.csv")


def test_manifest_bad_path_is_kept_for_validation_to_report(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\ndoes/not/exist.png,x\n")
    index = read_manifest(tmp_path / "m.csv")
    assert index.samples[0].path == tmp_path / "does/not/exist.png"


def test_known_class_list_overrides_found_classes(imagefolder: Path) -> None:
    index = load_source(
        DataConfig(source="imagefolder", path=imagefolder, classes=["alpha", "beta"])
    )
    assert index.classes == ["alpha", "beta"]
    assert index.counts()["gamma"] == 10  # still there, for validation to flag


def test_label_map_round_trips_through_json() -> None:
    lm = LabelMap(["b-pill", "a-pill"])
    again = LabelMap.from_json(lm.to_json())
    assert again == lm and again.index("a-pill") == 1 and again.label(0) == "b-pill"


def test_label_map_unknown_label_is_an_error() -> None:
    with pytest.raises(RxVisionError, match="'zzz' is not in the label map"):
        LabelMap(["a"]).index("zzz")


def test_bad_data_config_key_is_named() -> None:
    with pytest.raises(RxVisionError, match="data.validation.polcy"):
        load_config("demo", overrides=["data.validation.polcy=skip"])


def test_bad_data_config_value_is_named_with_allowed_values() -> None:
    with pytest.raises(RxVisionError) as err:
        load_config("demo", overrides=["data.validation.policy=ignore"])
    assert "data.validation.policy" in str(err.value) and "'fail'" in str(err.value)


def test_file_source_without_path_is_a_config_error() -> None:
    with pytest.raises(RxVisionError, match="data.path is required"):
        load_config("demo", overrides=["data.source=csv"])
