"""Batch inference library: inputs from a folder or CSV, one row per file, bad files named."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from rxvision.errors import RxVisionError
from rxvision.serving import ImageLimits, Predictor
from rxvision.serving.batch import classify_items, list_inputs, summarize, write_predictions
from tests.support.tiny import toy_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    root = tmp_path_factory.mktemp("inputs")
    images, labels = toy_images(5, 3, 40, seed=11)
    (root / "sub").mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(root / ("sub" if i % 2 else ".") / f"img{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (root / "notes.txt").write_text("ignored")
    return root, list(labels)


def test_folder_inputs_are_found_recursively_by_suffix(folder) -> None:
    root, _ = folder
    names = sorted(i.path.name for i in list_inputs(root))
    assert names == ["broken.jpg", "img0.png", "img1.png", "img2.png", "img3.png", "img4.png"]


def test_csv_inputs_resolve_relative_paths_and_keep_labels(folder, tmp_path: Path) -> None:
    root, _ = folder
    csv = root / "manifest.csv"
    csv.write_text("path,label\nimg0.png,pill_a\nsub/img1.png,\n")
    items = list_inputs(csv)
    assert [i.path for i in items] == [root / "img0.png", root / "sub" / "img1.png"]
    assert [i.label for i in items] == ["pill_a", None]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="neither a folder nor a .csv"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "m.csv").write_text("file\nx.png\n")
    with pytest.raises(RxVisionError, match="no 'path' column"):
        list_inputs(tmp_path / "m.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RxVisionError, match="no images"):
        list_inputs(empty)


def test_every_file_gets_a_row_and_broken_ones_name_the_reason(
    folder, tiny_bundle: Path, tmp_path: Path
) -> None:
    root, _ = folder
    predictor = Predictor.from_bundle(tiny_bundle, runtime="onnx", onnx_dir=tmp_path)
    batches = []
    rows = classify_items(
        list_inputs(root),
        predictor,
        ImageLimits(),
        batch_size=4,
        on_batch=lambda imgs, probs, sizes, emb, preds: batches.append(
            (len(imgs), probs.shape, len(sizes))
        ),
        progress=False,
    )
    assert len(rows) == 6
    broken = [r for r in rows if r.get("error")]
    assert (
        len(broken) == 1
        and broken[0]["path"].endswith("broken.jpg")
        and broken[0]["error"] == "not_an_image"
    )
    assert sum(n for n, _, _ in batches) == 5 and all(shape[0] == n == s for n, shape, s in batches)
    out = write_predictions(rows, tmp_path / "out" / "pred.csv")
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == [
        "path",
        "label",
        "predicted",
        "confidence",
        "top_k",
        "model_version",
    ]
    assert table["predicted"].notna().sum() == 5
    summary = summarize(rows)
    assert summary["predicted"] == 5 and summary["failed"] == 1 and summary["accuracy"] is None


def test_calibrated_bundle_rows_carry_the_set_flags_and_version(
    folder, calibrated_bundle: Path, tmp_path: Path
) -> None:
    import json

    root, _ = folder
    predictor = Predictor.from_bundle(calibrated_bundle, runtime="onnx", onnx_dir=tmp_path)
    seen = []
    rows = classify_items(
        list_inputs(root),
        predictor,
        ImageLimits(),
        on_batch=lambda imgs, probs, sizes, emb, preds: seen.extend(preds),
        progress=False,
    )
    done = [r for r in rows if r.get("predicted")]
    assert len(done) == 5 and len(seen) == 5
    for row in done:
        assert json.loads(row["label_set"])[0] == row["predicted"]
        assert isinstance(row["uncertain"], bool) and isinstance(row["unknown"], bool)
        assert row["calibration_version"] == predictor.calibration.version
    summary = summarize(rows)
    assert summary["uncertain_rate"] == pytest.approx(sum(r["uncertain"] for r in done) / 5)
    assert summary["unknown_rate"] == pytest.approx(sum(r["unknown"] for r in done) / 5)
    table = pd.read_csv(write_predictions(rows, tmp_path / "pred.csv"))
    assert table["calibration_version"].dropna().eq(predictor.calibration.version).all()
