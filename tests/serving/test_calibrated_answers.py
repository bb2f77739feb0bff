"""The real service with a calibrated model and /explain on: answers carry the label set,
uncertain, unknown and the calibration version; batch inference answers the same; /metrics
counts uncertain and unknown answers; /explain returns a PNG."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import SERVER_OVERRIDES, store_model
from tests.support.tiny import toy_images

pytestmark = pytest.mark.serving


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def calibrated_tag(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return store_model(bentoml_home, "calibrated", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trust_server(bentoml_home: Path, calibrated_tag: str, tmp_path_factory: pytest.TempPathFactory):
    from tests.support.launch import serve

    log = tmp_path_factory.mktemp("logs") / "serve.log"
    overrides = (*SERVER_OVERRIDES, "serving.explain=true")
    with serve(bentoml_home, log, overrides=overrides, model_tag=calibrated_tag) as srv:
        yield srv


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Toy pills, plus blends of two pills (between classes: doubtful answers)."""
    toy, _ = toy_images(8, 3, 48, seed=321)
    blends = [
        ((toy[i].astype(int) + toy[j]) // 2).astype(np.uint8)
        for i, j in [(0, 3), (1, 2), (2, 7), (4, 5)]
    ]
    return [*toy[:4], *blends]


def post(url: str, blobs: list[bytes]) -> list[dict]:
    """/classify_batch in requests of 4 (the tests' serving.max_images_per_request)."""
    answers = []
    for start in range(0, len(blobs), 4):
        files = [
            ("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs[start : start + 4])
        ]
        resp = httpx.post(f"{url}/classify_batch", files=files, timeout=60)
        assert resp.status_code == 200, resp.text
        answers += resp.json()["predictions"]
    return answers


def counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("rxvision_uncertain_answers_total", "rxvision_unknown_answers_total"):
                out[s.name] = s.value
    return out


def test_answer_has_label_set_flags_and_the_bundles_calibration_version(
    trust_server, images
) -> None:
    info = httpx.post(f"{trust_server.url}/model_info", json={}, timeout=30).json()
    cal = info["calibration"]
    assert cal["version"].startswith("cal-") and 0 < cal["coverage"] < 1
    assert {"set_threshold", "confidence_threshold", "ood_threshold", "temperature"} <= set(cal)
    resp = httpx.post(
        f"{trust_server.url}/classify",
        files={"image": ("x.png", png(images[0]), "image/png")},
        timeout=60,
    )
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["calibration_version"] == cal["version"]
    assert body["label"] == body["label_set"][0] and set(body["label_set"]) <= set(info["classes"])
    assert isinstance(body["uncertain"], bool) and isinstance(body["unknown"], bool)
    assert body["uncertain"] == (
        len(body["label_set"]) > 1 or body["confidence"] < cal["confidence_threshold"]
    )


def test_batch_inference_answers_as_the_service_for_the_same_images(
    trust_server, images, bentoml_home: Path, calibrated_tag: str, tmp_path: Path
) -> None:
    from bentos.store import BUNDLE_SUBDIR
    from rxvision.serving import ImageLimits, Predictor
    from rxvision.serving.batch import classify_items, list_inputs, write_predictions

    served = post(trust_server.url, [png(img) for img in images])
    name, version = calibrated_tag.split(":")
    bundle = bentoml_home / "models" / name / version / BUNDLE_SUBDIR
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    predictor = Predictor.from_bundle(bundle, runtime="onnx", onnx_dir=tmp_path / "onnx")
    rows = classify_items(list_inputs(tmp_path), predictor, ImageLimits(), progress=False)
    table = write_predictions(rows, tmp_path / "out.csv").read_text()
    assert "label_set,uncertain,unknown,calibration_version" in table.splitlines()[0]
    for answer, row in zip(served, sorted(rows, key=lambda r: int(Path(r["path"]).stem[3:]))):
        assert row["predicted"] == answer["label"]
        assert json.loads(row["label_set"]) == answer["label_set"]
        assert row["uncertain"] is answer["uncertain"] and row["unknown"] is answer["unknown"]
        assert row["calibration_version"] == answer["calibration_version"] is not None
        assert row["confidence"] == pytest.approx(answer["confidence"], abs=1e-5)


def test_metrics_count_uncertain_and_unknown_answers(trust_server, images) -> None:
    before = counters(trust_server.url)
    answers = post(trust_server.url, [png(img) for img in images])
    after = counters(trust_server.url)
    n_uncertain = sum(a["uncertain"] for a in answers)
    n_unknown = sum(a["unknown"] for a in answers)
    assert n_uncertain > 0 and n_unknown > 0, answers  # the blends are doubtful
    for name, n in [
        ("rxvision_uncertain_answers_total", n_uncertain),
        ("rxvision_unknown_answers_total", n_unknown),
    ]:
        assert after[name] - before.get(name, 0.0) == n


def test_explain_returns_the_map_as_a_png(trust_server, images) -> None:
    resp = httpx.post(
        f"{trust_server.url}/explain",
        files={"image": ("x.png", png(images[0]), "image/png")},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"].startswith("image/png")
    with Image.open(io.BytesIO(resp.content)) as img:
        assert img.format == "PNG" and min(img.size) >= 32
    bad = httpx.post(
        f"{trust_server.url}/explain", files={"image": ("x.png", b"nope", "image/png")}, timeout=30
    )
    assert bad.status_code == 415 and bad.json()["error"]["reason"] == "not_an_image"
