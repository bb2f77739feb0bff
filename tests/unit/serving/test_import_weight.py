"""The ONNX serving path stays import-light: loading a bundle that already has its ONNX export,
verifying it and predicting never imports torch, timm, torchvision or scikit-learn (the
service's startup would pay seconds for them), and the torch-free checks still refuse a
changed bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rxvision.errors import RxVisionError
from rxvision.serving import ONNX_FILE, Predictor, resolve_runtime, write_export_manifest
from rxvision.serving import predictor as predictor_module
from tests.support.tiny import toy_images

HEAVY = ("torch", "timm", "torchvision", "sklearn")

SERVE_ONE_IMAGE = """
import json, sys
from rxvision.serving import Predictor, ImageLimits, decode_image, top_k_predictions
from rxvision.models.bundle import read_bundle_info, sha256_file
from rxvision.monitoring.features import (
    image_features, prediction_features, EmbeddingProjector, embedding_columns,
    CATEGORICAL_FEATURES, IMAGE_FEATURES, PREDICTION_FEATURES,
)
from rxvision.export.runtimes import OnnxRunner, softmax
import numpy as np

predictor = Predictor.from_bundle(sys.argv[1], runtime="onnx", verify=True)
image = np.load(sys.argv[2])  # one toy image (tests.support.tiny imports torch for training)
prediction = predictor.predict([image])[0]
image_features(image)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"heavy": sorted({{m.split(".")[0] for m in heavy}}),
                  "prediction": prediction.to_dict(),
                  "runtime": predictor.runtime, "pandas": "pandas" in sys.modules}}))
"""


@pytest.fixture(scope="module")
def exported_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle with model.onnx and export.json beside it, as bentos/store.py
    puts it into the model store."""
    from rxvision.export import export_onnx
    from rxvision.models import load_bundle

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("exported") / "b"))
    loaded = load_bundle(bundle, verify=True)
    onnx_path = export_onnx(
        loaded.model, bundle / ONNX_FILE, int(loaded.info.normalization["image_size"])
    )
    write_export_manifest(bundle, onnx_path)
    return bundle


def test_onnx_serving_path_imports_no_torch_timm_torchvision_or_sklearn(
    exported_bundle: Path, tmp_path: Path
) -> None:
    images, _ = toy_images(1, 3, 32, seed=5)
    np.save(tmp_path / "image.npy", images[0])
    code = SERVE_ONE_IMAGE.format(heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code, str(exported_bundle), str(tmp_path / "image.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"the ONNX serving path imported {result['heavy']}"
    assert result["runtime"] == "onnx"
    assert not result["pandas"], "the ONNX serving path imported pandas"
    # same answer as a Predictor loaded in this (torch-importing) process
    expected = (
        Predictor.from_bundle(exported_bundle, runtime="onnx").predict(list(images))[0].to_dict()
    )
    assert result["prediction"]["label"] == expected["label"]
    assert result["prediction"]["model_version"] == expected["model_version"]
    assert result["prediction"]["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)


def test_auto_runtime_is_onnx_when_no_gpu_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(predictor_module, "cuda_present", lambda: False)
    assert resolve_runtime("auto") == "onnx"


@pytest.mark.parametrize("visible", ["", "-1"])
def test_hidden_gpus_are_not_present(monkeypatch: pytest.MonkeyPatch, visible: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert predictor_module.cuda_present() is False


def test_changed_weights_are_refused_on_the_onnx_path(
    exported_bundle: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))
    assert (copy / ONNX_FILE).is_file()
    Predictor.from_bundle(copy, runtime="onnx", verify=True)  # intact: loads
    with (copy / "weights.pt").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RxVisionError, match=r"weights\.pt sha256 .* does not match the recorded"):
        Predictor.from_bundle(copy, runtime="onnx", verify=True)
    Predictor.from_bundle(copy, runtime="onnx", verify=False)  # not checked when asked not to
