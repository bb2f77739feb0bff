from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rxvision.config import DataConfig
from rxvision.data.sources import load_source
from rxvision.data.synthetic import class_catalog, generate_synthetic_pills
from rxvision.errors import RxVisionError

SMALL = {"num_classes": 3, "images_per_class": 4, "image_size": 48}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.jpg"))}


def test_generator_writes_an_imagefolder_of_rgb_jpegs(tmp_path: Path) -> None:
    folder = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert classes == sorted(s.name for s in class_catalog(3))
    files = list(folder.rglob("*.jpg"))
    assert len(files) == 12
    with Image.open(files[0]) as img:
        assert img.mode == "RGB" and img.size == (48, 48)


def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path: Path) -> None:
    a = generate_synthetic_pills(tmp_path / "a", seed=1, workers=1, **SMALL)
    b = generate_synthetic_pills(tmp_path / "b", seed=1, workers=2, **SMALL)
    c = generate_synthetic_pills(tmp_path / "c", seed=2, workers=1, **SMALL)
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)


def test_images_of_a_class_differ_from_each_other(tmp_path: Path) -> None:
    folder = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    first = sorted((folder / class_catalog(3)[0].name).glob("*.jpg"))
    arrays = [np.asarray(Image.open(p), float) for p in first]
    assert all(np.abs(arrays[0] - other).mean() > 5 for other in arrays[1:])


def test_cache_is_reused_not_regenerated(tmp_path: Path) -> None:
    first = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    marker = next(first.rglob("*.jpg"))
    marker.write_bytes(b"changed")  # a regenerated cache would restore it
    again = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    assert again == first and marker.read_bytes() == b"changed"


def test_half_written_cache_is_not_reused(tmp_path: Path) -> None:
    folder = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    (folder / ".synthetic.json").unlink()  # as if a run died before finishing
    for p in list(folder.rglob("*.jpg"))[:5]:
        p.unlink()
    again = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    assert len(list(again.rglob("*.jpg"))) == 12 and (again / ".synthetic.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_different_parameters_get_different_cache_folders(tmp_path: Path) -> None:
    a = generate_synthetic_pills(tmp_path, seed=0, workers=1, **SMALL)
    b = generate_synthetic_pills(tmp_path, seed=0, workers=1, **{**SMALL, "image_size": 40})
    assert a != b and a.exists() and b.exists()


def test_catalog_shares_colours_and_shapes_and_names_are_unique() -> None:
    specs = class_catalog(12)
    names = [s.name for s in specs]
    assert len(set(names)) == 12
    assert max(Counter(s.colour for s in specs).values()) >= 3
    assert max(Counter(s.shape for s in specs).values()) >= 3
    assert names[0] == "round-white-scored-A12"
    assert len({s.name for s in class_catalog(64)}) == 64


def test_too_many_classes_is_an_error() -> None:
    with pytest.raises(RxVisionError, match="num_classes"):
        class_catalog(10_000)


def test_load_source_generates_into_the_configured_cache(tmp_path: Path) -> None:
    cfg = DataConfig.model_validate(
        {
            "source": "synthetic",
            "cache_dir": str(tmp_path),
            "synthetic": {"num_classes": 2, "images_per_class": 4, "image_size": 48, "workers": 1},
        }
    )
    index = load_source(cfg)
    assert len(index) == 8 and len(index.classes) == 2
    assert all(tmp_path in s.path.parents for s in index.samples)
    assert index.ignored == []


def test_rxvision_home_sets_the_default_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RXVISION_HOME", str(tmp_path / "home"))
    cfg = DataConfig.model_validate(
        {"synthetic": {"num_classes": 2, "images_per_class": 4, "image_size": 48, "workers": 1}}
    )
    index = load_source(cfg)
    assert all((tmp_path / "home" / "cache") in s.path.parents for s in index.samples)
