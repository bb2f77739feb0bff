"""Work per image and per request is bounded: tiny long images (a 1 x 100,000 PNG is ~500
bytes), 32 of them in one request, and images within the limits, measured as the peak memory
(VmHWM) of the service's processes read from /proc."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.serving.conftest import SERVER_OVERRIDES

pytestmark = pytest.mark.serving

# a normal image in these tests is 48 x 48; the budget below is a small multiple of it
OVERRIDES = (
    *[o for o in SERVER_OVERRIDES if "max_images_per_request" not in o],
    "serving.max_images_per_request=32",
    "serving.max_image_pixels=40000000",
)


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 200)).save(buf, format="PNG")
    return buf.getvalue()


def tree_peak_kb(root_pid: int) -> dict[int, int]:
    """VmHWM (peak resident memory, kB) of every process in the server's process group."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != root_pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[int(entry.name)] = int(line.split()[1])
        except (OSError, ProcessLookupError, ValueError):
            continue
    return out


@pytest.fixture(scope="module")
def limits_server(
    bentoml_home: Path, served_model_tag: str, tmp_path_factory: pytest.TempPathFactory
):
    from tests.support.launch import serve

    log = tmp_path_factory.mktemp("logs") / "serve.log"
    with serve(bentoml_home, log, overrides=OVERRIDES, model_tag=served_model_tag) as srv:
        yield srv


def batch(url: str, blobs: list[bytes]) -> httpx.Response:
    files = [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
    return httpx.post(f"{url}/classify_batch", files=files, timeout=120)


def test_tiny_long_images_are_refused_and_peak_memory_stays_bounded(limits_server) -> None:
    url, pid = limits_server.url, limits_server.process.pid
    assert batch(url, [png(48, 48)] * 4).status_code == 200  # warm: a normal request's peak
    before = tree_peak_kb(pid)
    strip = png(100_000, 1)
    assert len(strip) < 2000
    one = httpx.post(f"{url}/classify", files={"image": ("s.png", strip, "image/png")}, timeout=120)
    assert one.status_code == 422 and one.json()["error"]["reason"] == "aspect_ratio"
    many = batch(url, [strip] * 32)
    assert many.status_code == 422 and many.json()["error"]["index"] == 0
    # the longest images within the limits (20:1, upscaled on the short side), 32 at once
    ok = batch(url, [png(2000, 100)] * 32)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 32
    after = tree_peak_kb(pid)
    growth_mb = max(after.get(p, 0) - before.get(p, 0) for p in after) / 1024
    print(f"\npeak memory growth of the busiest process: {growth_mb:.1f} MB")
    assert growth_mb < 150, (
        f"a worker's peak memory grew by {growth_mb:.0f} MB"
    )  # was 5.1 GB per image


def test_a_request_over_the_pixel_budget_is_refused_before_decoding(limits_server) -> None:
    # 32 x 4 M pixels = 128 M > max_request_pixels (100 M), each image under max_image_pixels
    blob = png(2000, 2000)
    resp = batch(limits_server.url, [blob] * 32)
    assert resp.status_code == 413 and resp.json()["error"]["reason"] == "request_too_large"
    assert "100000000" in resp.json()["error"]["message"]
