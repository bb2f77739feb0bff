"""The real service over HTTP: answers, batching, every bad input kind, overload, metrics."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.support.tiny import toy_images

pytestmark = pytest.mark.serving


def png(arr: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray]:
    return toy_images(12, 3, 48, seed=321)


def post_one(url: str, data: bytes, name: str = "x.png") -> httpx.Response:
    return httpx.post(
        f"{url}/classify", files={"image": (name, data, "application/octet-stream")}, timeout=60
    )


def metrics(url: str) -> dict[str, list]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def test_bentoml_client_classifies_one_image(server, toy, tmp_path: Path) -> None:
    import bentoml

    images, labels = toy
    path = tmp_path / "pill.png"
    path.write_bytes(png(images[0]))
    with bentoml.SyncHTTPClient(server.url, timeout=60) as client:
        body = client.classify(image=path)
    assert body["label"] == f"pill_{'abc'[labels[0]]}"
    assert body["model_version"] == "7" and len(body["top_k"]) == 3
    assert body["top_k"][0]["probability"] == body["confidence"] >= body["top_k"][1]["probability"]


def test_several_images_are_answered_in_order(server, toy) -> None:
    images, labels = toy
    files = [("images", (f"{i}.png", png(images[i]), "image/png")) for i in range(4)]
    resp = httpx.post(f"{server.url}/classify_batch", files=files, timeout=60)
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert [p["label"] for p in preds] == [f"pill_{'abc'[y]}" for y in labels[:4]]


def test_model_info_names_version_classes_metrics_and_stage(server) -> None:
    info = httpx.post(f"{server.url}/model_info", json={}, timeout=30).json()
    assert info["model_version"] == "7" and info["stage"] == "production"
    assert info["classes"] == ["pill_a", "pill_b", "pill_c"]
    assert "accuracy" in info["metrics"] and len(info["sha256"]) == 64


def _bad_inputs(toy_image: np.ndarray) -> dict[str, tuple[bytes, int]]:
    jpeg = png(toy_image, "JPEG", quality=95)
    noise = np.random.default_rng(0).integers(0, 256, size=(400, 400, 3), dtype=np.uint8)
    return {
        "not_an_image": (b"%PDF-1.4 definitely not a picture", 415),
        "truncated": (jpeg[: len(jpeg) // 2], 422),
        "empty": (b"", 400),
        "unsupported_format": (png(Image.fromarray(toy_image), "PPM"), 415),
        "decompression_bomb": (png(Image.new("1", (5000, 5000))), 413),
        "too_large": (png(noise, "BMP"), 413),
    }


@pytest.mark.parametrize(
    "reason",
    ["not_an_image", "truncated", "empty", "unsupported_format", "decompression_bomb", "too_large"],
)
def test_bad_upload_is_a_4xx_naming_the_reason(server, toy, reason: str) -> None:
    data, status = _bad_inputs(toy[0][0])[reason]
    resp = post_one(server.url, data)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["reason"] == reason and error["message"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_odd_colour_modes_are_converted_and_answered(server, toy, mode: str) -> None:
    img = Image.fromarray(toy[0][1])
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    else:
        img = img.convert(mode)
    data = png(img, "JPEG" if mode == "CMYK" else "PNG")
    resp = post_one(server.url, data)
    assert resp.status_code == 200, resp.text
    assert resp.json()["label"].startswith("pill_")


def test_empty_batch_and_too_many_images_are_4xx(server, toy) -> None:
    empty = httpx.post(f"{server.url}/classify_batch", json={"images": []}, timeout=30)
    assert empty.status_code == 400 and empty.json()["error"]["reason"] == "empty_batch"
    files = [("images", (f"{i}.png", png(toy[0][i]), "image/png")) for i in range(5)]
    many = httpx.post(f"{server.url}/classify_batch", files=files, timeout=60)
    assert many.status_code == 413 and many.json()["error"]["reason"] == "too_many_images"
    assert "4" in many.json()["error"]["message"]


def test_one_bad_image_in_a_batch_is_named_by_index(server, toy) -> None:
    files = [
        ("images", ("ok.png", png(toy[0][0]), "image/png")),
        ("images", ("bad.png", b"junk", "image/png")),
    ]
    resp = httpx.post(f"{server.url}/classify_batch", files=files, timeout=60)
    assert resp.status_code == 415 and resp.json()["error"]["index"] == 1


def test_server_stays_healthy_after_bad_inputs(server, toy) -> None:
    for data, _ in _bad_inputs(toy[0][0]).values():
        assert post_one(server.url, data).status_code < 500
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert post_one(server.url, png(toy[0][2])).status_code == 200


def test_concurrent_requests_are_batched(server, toy) -> None:
    blobs = [png(img) for img in toy[0][:6]]

    def batched_requests() -> float:
        samples = metrics(server.url)["rxvision_batch_size"]
        total = sum(s.value for s in samples if s.name.endswith("_count"))
        single = sum(
            s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == "1.0"
        )
        return total - single  # model calls that merged more than one request

    before = batched_requests()
    for _ in range(10):  # a few rounds: the adaptive batcher may dispatch a lone early arrival
        with ThreadPoolExecutor(6) as pool:
            codes = [r.status_code for r in pool.map(lambda b: post_one(server.url, b), blobs)]
        assert codes == [200] * 6
        if batched_requests() > before:
            break
    assert batched_requests() > before


def test_overload_is_503_with_retry_after_never_500(server, toy) -> None:
    blob = png(toy[0][3])
    files = [("images", (f"{i}.png", blob, "image/png")) for i in range(4)]

    def call(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/classify_batch", files=files, timeout=120)

    with ThreadPoolExecutor(48) as pool:
        responses = list(pool.map(call, range(48)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    overloaded = [r for r in responses if r.status_code == 503]
    assert overloaded, "48 concurrent requests against max_in_flight=6 should overload"
    assert all(r.headers.get("Retry-After") == "1" for r in overloaded)
    assert overloaded[0].json()["error"]["reason"] == "overloaded"
    assert post_one(server.url, blob).status_code == 200


def test_metrics_parse_and_count_predictions_confidence_and_rejections(server, toy) -> None:
    post_one(server.url, b"")
    post_one(server.url, png(toy[0][4]))
    fams = metrics(server.url)
    preds = {
        s.labels["label"]: s.value
        for s in fams["rxvision_predictions"]
        if s.name.endswith("_total")
    }
    assert sum(preds.values()) >= 1 and set(preds) <= {"pill_a", "pill_b", "pill_c"}
    rejected = {
        s.labels["reason"]: s.value
        for s in fams["rxvision_rejected_inputs"]
        if s.name.endswith("_total")
    }
    assert rejected.get("empty", 0) >= 1
    conf_count = [
        s.value for s in fams["rxvision_prediction_confidence"] if s.name.endswith("_count")
    ]
    assert conf_count and conf_count[0] >= 1
    assert "bentoml_service_request" in " ".join(fams)  # BentoML's own metrics are there too


def test_uncalibrated_model_answers_with_null_trust_fields_and_explain_is_off(server, toy) -> None:
    body = post_one(server.url, png(toy[0][0])).json()
    assert body["calibration_version"] is None
    assert body["label_set"] is None and body["uncertain"] is None and body["unknown"] is None
    info = httpx.post(f"{server.url}/model_info", json={}, timeout=30).json()
    assert info["calibration"] is None and info["explain"] is False
    resp = httpx.post(
        f"{server.url}/explain", files={"image": ("x.png", png(toy[0][0]), "image/png")}, timeout=30
    )
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["reason"] == "explain_disabled" and "serving.explain" in err["hint"]
