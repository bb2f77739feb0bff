"""A served model that is corrupted or raises keeps answering from its fallback (the switch
shows in /model_info and /metrics); an API key closes everything but the health probes."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import SERVER_OVERRIDES, store_model

pytestmark = pytest.mark.serving


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return buf.getvalue()


def one(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/classify",
        files={"image": ("p.png", png(), "image/png")},
        headers=headers,
        timeout=60,
    )


def samples(url: str, name: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == name:
            for s in fam.samples:
                if not s.name.endswith("_created"):
                    out[s.labels.get("model", "")] = max(
                        out.get(s.labels.get("model", ""), 0.0), s.value
                    )
    return out


@pytest.fixture()
def serve_kind(bentoml_home: Path, tmp_path: Path):
    from contextlib import ExitStack

    from tests.support.launch import serve

    with ExitStack() as stack:

        def start(kind: str, overrides: tuple[str, ...] = (), env: dict[str, str] | None = None):
            tag = store_model(bentoml_home, kind, tmp_path / kind)
            return stack.enter_context(
                serve(
                    bentoml_home,
                    tmp_path / f"{kind}.log",
                    overrides=(*SERVER_OVERRIDES, *overrides),
                    model_tag=tag,
                    extra_env=env,
                )
            )

        yield start


def test_a_model_failing_its_sha256_check_is_replaced_by_the_fallback(serve_kind) -> None:
    srv = serve_kind("fallback_corrupt")
    resp = one(srv.url)
    assert resp.status_code == 200 and resp.json()["model_version"] == "6"
    assert len(resp.json()["top_k"]) == 2  # the config sections stored with the model apply
    full = httpx.post(f"{srv.url}/model_info", json={}, timeout=30).json()
    assert full["traffic_sample_rate"] == 0.25
    info = full["serving"]
    assert info["active"] == "fallback" and "sha256" in info["load_errors"]["primary"]
    assert samples(srv.url, "rxvision_model_active") == {"primary": 0.0, "fallback": 1.0}
    assert samples(srv.url, "rxvision_model_failures")["primary"] >= 1
    assert "could not be loaded" in srv.log_path.read_text()


def test_a_model_that_raises_at_inference_trips_its_breaker_to_the_fallback(serve_kind) -> None:
    srv = serve_kind(
        "fallback_raises", ("serving.breaker_failures=1", "serving.breaker_reset_s=600")
    )
    assert one(srv.url).json()["model_version"] == "7"  # batches of one still work on the primary
    files = [("images", (f"{i}.png", png(), "image/png")) for i in range(2)]
    resp = httpx.post(f"{srv.url}/classify_batch", files=files, timeout=60)
    assert resp.status_code == 200, resp.text
    assert [p["model_version"] for p in resp.json()["predictions"]] == ["6", "6"]
    # the breaker is open: even a single image now goes to the fallback, without a retry
    assert one(srv.url).json()["model_version"] == "6"
    info = httpx.post(f"{srv.url}/model_info", json={}, timeout=30).json()["serving"]
    assert info["active"] == "fallback" and info["models"]["primary"]["breaker"] == "open"
    assert "invalid dimensions" in info["models"]["primary"]["last_error"].lower()
    assert samples(srv.url, "rxvision_model_active") == {"primary": 0.0, "fallback": 1.0}
    answers = samples(srv.url, "rxvision_model_answers")
    assert answers["primary"] >= 1 and answers["fallback"] >= 2
    assert "breaker_open" in srv.log_path.read_text()


def test_with_an_api_key_only_the_health_probes_are_open(serve_kind, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    srv = serve_kind("plain", env={"RXVISION_API_KEY_FILE": str(key_file)})
    refused = one(srv.url)
    assert refused.status_code == 401 and refused.json()["error"]["reason"] == "unauthorized"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert one(srv.url, {"Authorization": "Bearer wrong"}).status_code == 401
    assert one(srv.url, {"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert one(srv.url, {"X-API-Key": "s3cret-key"}).status_code == 200
    for probe in ("/livez", "/readyz"):
        assert httpx.get(f"{srv.url}{probe}", timeout=10).status_code == 200
    assert httpx.get(f"{srv.url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{srv.url}/docs.json", timeout=10).status_code == 401
    metrics = httpx.get(f"{srv.url}/metrics", headers={"X-API-Key": "s3cret-key"}, timeout=10)
    assert metrics.status_code == 200 and "rxvision_rejected_inputs" in metrics.text
