"""Predictor: a verified bundle behind ONNX Runtime or PyTorch gives the same top-k answers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rxvision.errors import RxVisionError
from rxvision.serving import (
    EXPORT_MANIFEST,
    ONNX_FILE,
    Predictor,
    resolve_runtime,
    write_export_manifest,
)
from tests.support.tiny import toy_images


@pytest.fixture(scope="module")
def onnx_predictor(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.from_bundle(
        tiny_bundle, runtime="onnx", top_k=2, onnx_dir=tmp_path_factory.mktemp("onnx")
    )


def test_tiny_model_classifies_held_out_toy_images(onnx_predictor: Predictor) -> None:
    images, labels = toy_images(30, 3, 48, seed=123)  # other seed and size than training
    preds = onnx_predictor.predict(list(images))
    accuracy = np.mean([p.label == onnx_predictor.classes[y] for p, y in zip(preds, labels)])
    assert accuracy >= 0.8


def test_predictions_carry_sorted_top_k_probabilities_and_the_version(
    onnx_predictor: Predictor,
) -> None:
    images, _ = toy_images(4, 3, 32, seed=1)
    for pred in onnx_predictor.predict(list(images)):
        body = pred.to_dict()
        probs = [s["probability"] for s in body["top_k"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True)
        assert body["label"] == body["top_k"][0]["label"] and body["confidence"] == probs[0]
        assert 0.0 < sum(probs) <= 1.0 + 1e-6
        assert body["model_version"] == onnx_predictor.model_version
        assert pred.embedding is not None and pred.embedding.ndim == 1


def test_onnx_and_torch_runtimes_agree(tiny_bundle: Path, onnx_predictor: Predictor) -> None:
    torch_predictor = Predictor.from_bundle(tiny_bundle, runtime="torch", top_k=2)
    images, _ = toy_images(8, 3, 40, seed=7)
    batch = onnx_predictor.preprocess(list(images))
    p_onnx, e_onnx = onnx_predictor.predict_arrays(batch)
    p_torch, e_torch = torch_predictor.predict_arrays(batch)
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    assert np.abs(e_onnx - e_torch).max() < 1e-3


def test_images_of_any_size_are_batched_together(onnx_predictor: Predictor) -> None:
    small, _ = toy_images(1, 3, 20, seed=2)
    large, _ = toy_images(1, 3, 90, seed=3)
    assert len(onnx_predictor.predict([small[0], large[0][:, :70]])) == 2


def test_no_images_give_no_predictions(onnx_predictor: Predictor) -> None:
    assert onnx_predictor.predict([]) == []


def test_changed_weights_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    with (copy / "weights.pt").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RxVisionError, match="sha256"):
        Predictor.from_bundle(copy, runtime="onnx", onnx_dir=tmp_path)


def test_changed_onnx_file_is_refused(
    tiny_bundle: Path, onnx_predictor: Predictor, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    shutil.copy2(onnx_predictor.runner.path, copy / ONNX_FILE)
    write_export_manifest(copy, copy / ONNX_FILE)
    assert json.loads((copy / EXPORT_MANIFEST).read_text())["onnx_sha256"]
    Predictor.from_bundle(copy, runtime="onnx")  # intact: loads
    with (copy / ONNX_FILE).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RxVisionError, match="sha256"):
        Predictor.from_bundle(copy, runtime="onnx")


def test_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="not a model bundle"):
        Predictor.from_bundle(tmp_path, runtime="onnx")


def test_auto_runtime_is_onnx_without_cuda() -> None:
    import torch

    assert resolve_runtime("auto") == ("torch" if torch.cuda.is_available() else "onnx")
    with pytest.raises(RxVisionError):
        resolve_runtime("tensorflow")  # type: ignore[arg-type]


def test_calibrated_bundle_answers_with_set_flags_and_version(
    calibrated_bundle: Path, tmp_path: Path
) -> None:
    from rxvision.calibration import apply_calibration

    predictor = Predictor.from_bundle(calibrated_bundle, runtime="onnx", onnx_dir=tmp_path)
    images, _ = toy_images(6, 3, 40, seed=5)
    out = predictor.infer(predictor.preprocess(list(images)))
    preds = predictor.to_predictions(out)
    expected = apply_calibration(out.logits, predictor.calibration, predictor.classes)
    for pred, want in zip(preds, expected):
        body = pred.to_dict()
        assert (
            body["calibration_version"]
            == want["calibration_version"]
            == predictor.calibration.version
        )
        assert body["label"] == want["label"] and body["label_set"] == want["label_set"]
        assert body["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
        assert body["uncertain"] is want["uncertain"] and body["unknown"] is want["unknown"]
    # the plain softmax (what the traffic log and the drift reference record) is kept beside it
    from rxvision.calibration import softmax

    assert np.allclose(out.probs, softmax(out.logits), atol=1e-5)


def test_uncalibrated_bundle_answers_as_before_with_null_trust_fields(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    predictor = Predictor.from_bundle(tiny_bundle, runtime="onnx", onnx_dir=tmp_path)
    out = predictor.infer(np.zeros((2, 3, 32, 32), np.float32))
    body = predictor.to_predictions(out)[0].to_dict()
    assert body["confidence"] == pytest.approx(float(out.probs[0].max()), abs=1e-6)
    assert body["label_set"] is None and body["uncertain"] is None and body["unknown"] is None
    assert body["calibration_version"] is None
