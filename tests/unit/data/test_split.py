from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rxvision.config import SplitConfig
from rxvision.data.sources import DatasetIndex, Sample, scan_imagefolder
from rxvision.data.split import fingerprint, stratified_split
from rxvision.errors import RxVisionError


def test_split_is_stratified_and_covers_every_sample_once(imagefolder: Path) -> None:
    index = scan_imagefolder(imagefolder)
    splits = stratified_split(index, SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=1))
    counts = splits.counts()
    assert counts["train"] == {"alpha": 6, "beta": 6, "gamma": 6}
    assert counts["val"] == {"alpha": 2, "beta": 2, "gamma": 2}
    assert counts["test"] == {"alpha": 2, "beta": 2, "gamma": 2}
    all_paths = [s.path for part in (splits.train, splits.val, splits.test) for s in part]
    assert sorted(all_paths) == sorted(s.path for s in index.samples)


def test_split_repeats_with_the_same_seed_and_changes_with_another(imagefolder: Path) -> None:
    index = scan_imagefolder(imagefolder)
    a = stratified_split(index, SplitConfig(seed=3))
    b = stratified_split(index, SplitConfig(seed=3))
    c = stratified_split(index, SplitConfig(seed=4))
    assert a.test == b.test and a.val == b.val
    assert a.test != c.test


def test_duplicates_are_kept_in_one_split(imagefolder: Path) -> None:
    for i in range(5):  # five copies of one image under different names
        shutil.copy(imagefolder / "alpha" / "00.jpg", imagefolder / "alpha" / f"copy{i}.jpg")
    index = scan_imagefolder(imagefolder)
    for seed in range(6):
        splits = stratified_split(index, SplitConfig(seed=seed))
        holders = {
            name
            for name, part in splits.as_dict().items()
            for s in part
            if s.label == "alpha" and (s.path.name == "00.jpg" or s.path.name.startswith("copy"))
        }
        assert len(holders) == 1


def test_manifest_splits_are_honoured(tmp_path: Path) -> None:
    samples = [Sample(tmp_path / f"{i}.png", "x", "train" if i < 3 else "test") for i in range(5)]
    splits = stratified_split(DatasetIndex(samples, ["x"], root=tmp_path), SplitConfig())
    assert len(splits.train) == 3 and len(splits.test) == 2 and splits.val == []
    assert splits.source == "manifest"


def test_tiny_class_keeps_a_training_sample(tmp_path: Path, make_image) -> None:
    make_image(tmp_path / "solo" / "a.png", seed=5)
    make_image(tmp_path / "pair" / "a.png", seed=6)
    make_image(tmp_path / "pair" / "b.png", seed=7)
    splits = stratified_split(
        scan_imagefolder(tmp_path), SplitConfig(val_fraction=0.4, test_fraction=0.4)
    )
    assert {s.label for s in splits.train} == {"solo", "pair"}


def test_empty_index_cannot_be_split(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="empty"):
        stratified_split(DatasetIndex([], ["x"]), SplitConfig())


def test_fingerprint_ignores_location_but_sees_content_and_labels(
    imagefolder: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(imagefolder, moved)
    fp = fingerprint(scan_imagefolder(imagefolder))
    assert fingerprint(scan_imagefolder(moved)) == fp
    (moved / "beta" / "03.jpg").write_bytes((moved / "beta" / "04.jpg").read_bytes())
    assert fingerprint(scan_imagefolder(moved)) != fp
    shutil.rmtree(moved)
    shutil.copytree(imagefolder, moved)
    shutil.move(str(moved / "beta" / "03.jpg"), moved / "gamma" / "03b.jpg")
    assert fingerprint(scan_imagefolder(moved)) != fp


def test_splits_carry_the_dataset_fingerprint(imagefolder: Path) -> None:
    index = scan_imagefolder(imagefolder)
    assert stratified_split(index, SplitConfig()).fingerprint == fingerprint(index)
