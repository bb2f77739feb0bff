"""The service as operators and people meet it, against a real `bentoml serve`: a real
Prometheus scrapes it with the repository's scrape config and alert rules and the series can
be read back; the upload page at /ui works in a real headless Chromium (screenshot kept)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.support.browser import launch, sync_playwright
from tests.support.launch import free_port

pytestmark = [pytest.mark.serving, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("RXVISION_TEST_ARTIFACTS", ROOT / ".rxvision" / "test-artifacts"))


def _png(seed: int = 0, size: int = 40) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    """Debian's prometheus with ops/prometheus.yml, its target moved to the test server and
    a 1 s scrape interval; ops/alerts.yml loaded as in production."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "Prometheus is not installed (Debian package `prometheus`; .ci/run installs it)"
        )
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "ops" / "alerts.yml")]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "rxvision")
    job["static_configs"][0]["targets"] = [server.url.removeprefix("http://")]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus was not ready after 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _query(url: str, expr: str, timeout_s: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if data["status"] == "success" and data["data"]["result"]:
            return data["data"]["result"]
        time.sleep(1)
    return []


def test_prometheus_scrapes_the_service_and_reads_its_series_back(server, prometheus) -> None:
    for seed in range(3):
        reply = httpx.post(
            f"{server.url}/classify",
            files={"image": ("p.png", _png(seed), "image/png")},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
    up = _query(prometheus, 'up{job="rxvision"} == 1')
    assert up, "Prometheus never scraped the service"
    served = _query(prometheus, "sum(rxvision_predictions_total) >= 3")
    assert served and float(served[0]["value"][1]) >= 3
    requests = _query(
        prometheus,
        'sum by (http_response_code) (bentoml_service_request_total{endpoint="/classify"})',
    )
    assert {r["metric"].get("http_response_code") for r in requests} >= {"200"}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"RxVisionLatencyP99High", "RxVisionOverloaded", "RxVisionDriftDetected"} <= names
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules


def test_upload_page_shows_photo_answer_set_and_confidence_in_chromium(server, tmp_path) -> None:
    image = tmp_path / "pill.png"
    image.write_bytes(_png(7, 64))
    classes = httpx.post(f"{server.url}/model_info", json={}, timeout=30).json()
    classes = classes.get("classes") or []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.url}/ui/")
            assert page.title() == "RxVision: identify a pill"
            assert page.get_attribute("#docs", "href") == "/"  # BentoML's Swagger UI
            page.set_input_files("#image", str(image))
            page.click("#submit")
            page.wait_for_selector("#result.shown", timeout=60_000)
            answer = page.text_content("#answer")
            assert answer in classes
            assert page.text_content("#confidence").endswith("%")
            rows = page.locator("#set tbody tr")
            assert rows.count() >= 1 and rows.first.text_content().startswith(answer)
            assert page.evaluate("document.getElementById('photo').naturalWidth") == 64
            assert not errors, errors
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / "upload-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 5000

            page.set_input_files(
                "#image", {"name": "notes.txt", "mimeType": "image/png", "buffer": b"not an image"}
            )
            page.click("#submit")
            page.wait_for_selector("#error.shown", timeout=60_000)
            assert "Could not identify" in page.text_content("#error")
        finally:
            browser.close()


def test_swagger_ui_and_page_are_served_side_by_side(server) -> None:
    swagger = httpx.get(f"{server.url}/", timeout=30)
    assert swagger.status_code == 200 and "<html" in swagger.text.lower()
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert "/classify" in spec["paths"] and "/ui" not in spec["paths"]
    page = httpx.get(f"{server.url}/ui/", timeout=30)
    assert page.status_code == 200 and "RxVision: identify a pill" in page.text
