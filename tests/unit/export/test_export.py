"""Export: ONNX with a dynamic batch axis, TorchScript and int8 checked against PyTorch and
profiled; disagreement is an error; TensorRT says why it is unavailable."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rxvision.config import ExportConfig
from rxvision.errors import RxVisionError
from rxvision.export import (
    OnnxRunner,
    TorchRunner,
    check_parity,
    export_model,
    export_onnx,
    profile_latency,
    quantize_int8,
    tensorrt_status,
)
from rxvision.models import load_bundle
from rxvision.serving import preprocess_batch
from tests.support.tiny import toy_images


@pytest.fixture(scope="module")
def loaded(tiny_bundle: Path):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def test_set(loaded):
    images, labels = toy_images(24, 3, 32, seed=99)
    return preprocess_batch(list(images), loaded.info.normalization_obj()), labels


def test_onnx_accepts_any_batch_size(loaded, tmp_path: Path) -> None:
    path = export_onnx(loaded.model, tmp_path / "m.onnx", image_size=32)
    runner = OnnxRunner(path)
    assert runner.has_embedding
    for n in (1, 5):
        assert runner(np.zeros((n, 3, 32, 32), np.float32)).shape == (n, 3)


def test_export_model_checks_parity_reports_int8_and_profiles(
    loaded, test_set, tmp_path: Path
) -> None:
    images, labels = test_set
    cfg = ExportConfig(profile_batch_sizes=[1, 4], profile_iterations=2, profile_warmup=1)
    result = export_model(loaded.model, tmp_path, cfg, image_size=32, images=images, labels=labels)
    assert set(result.artifacts) == {"onnx", "torchscript"} and all(
        p.is_file() for p in result.artifacts.values()
    )
    for name in ("onnx", "torchscript"):
        report = result.parity[name]
        assert (
            report.passed
            and report.top1_agreement == 1.0
            and report.max_abs_diff <= cfg.parity_atol
        )
    int8 = result.parity["int8"]
    assert int8.accuracy_reference is not None and int8.accuracy_change is not None
    assert {(s.format, s.batch_size) for s in result.profile} >= {
        (f, b) for f in ("torch", "onnx", "torchscript", "int8") for b in (1, 4)
    }
    data = json.loads(json.dumps(result.to_dict()))  # JSON-safe
    assert data["passed"] is True and data["int8_accuracy_change"] == int8.accuracy_change
    if not torch.cuda.is_available():
        assert data["unavailable"]["tensorrt_fp16"].startswith("unavailable:")


def test_a_disagreeing_export_fails_parity(loaded, test_set) -> None:
    images, _ = test_set
    reference = TorchRunner(loaded.model)

    class Shifted:
        name = "onnx"

        def __call__(self, batch):
            return reference(batch) + 0.01

    report = check_parity(reference, Shifted(), images, atol=1e-3)
    assert not report.passed and report.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    assert report.top1_agreement == 1.0


def test_an_approximate_format_is_judged_by_top1_agreement(loaded, test_set) -> None:
    images, _ = test_set
    reference = TorchRunner(loaded.model)

    class Swapped:
        name = "int8"

        def __call__(self, batch):
            out = reference(batch)
            out[0] = -out[0]  # the first image of every batch changes its top-1 label
            return out

    close = check_parity(reference, Swapped(), images, atol=None, min_top1_agreement=0.5)
    strict = check_parity(reference, Swapped(), images, atol=None, min_top1_agreement=0.99)
    assert close.atol is None and close.passed
    assert not strict.passed and strict.top1_agreement < 0.99


def test_export_model_raises_when_parity_fails(loaded, test_set, tmp_path: Path) -> None:
    images, _ = test_set
    cfg = ExportConfig(formats=["onnx"], parity_atol=1e-12, tensorrt=False)
    with pytest.raises(RxVisionError, match="disagrees with PyTorch"):
        export_model(loaded.model, tmp_path, cfg, image_size=32, images=images, profile=False)


def test_int8_quantizes_the_linear_head_only(loaded) -> None:
    q = quantize_int8(loaded.model)
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds)
    assert isinstance(loaded.model.head.fc, torch.nn.Linear)  # original untouched


def test_profile_percentiles_are_ordered_and_throughput_positive(loaded) -> None:
    stats = profile_latency(TorchRunner(loaded.model), 32, batch_sizes=[2], iterations=5, warmup=1)
    (s,) = stats
    assert s.batch_size == 2 and s.p50_ms <= s.p95_ms <= s.p99_ms and s.throughput_ips > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only expectation")
def test_tensorrt_is_unavailable_without_cuda() -> None:
    ok, why = tensorrt_status()
    assert not ok and "CUDA" in why
