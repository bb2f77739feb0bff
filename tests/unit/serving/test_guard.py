"""bentos.guard.RequestGuard as plain ASGI (no server): what it refuses before the app sees a
request, and that an accepted body reaches the app unchanged. The serving tier
(tests/serving/test_hostile.py) sends the same kinds of requests to a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bentos.guard import GuardSettings, ImageRoute, RequestGuard

B = "bnd"


def settings(**kw) -> GuardSettings:
    routes = {
        "/classify": ImageRoute("image", False),
        "/classify_batch": ImageRoute("images", True),
    }
    base = {
        "image_routes": routes,
        "json_routes": frozenset({"/model_info"}),
        "max_request_bytes": 10_000,
        "max_image_bytes": 2_000,
        "max_images": 3,
        "max_in_flight": 4,
        "body_timeout_s": 1.0,
        "retry_after_s": 1,
    }
    return GuardSettings(**{**base, **kw})


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, data, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{B}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{B}--\r\n".encode()


def call(
    guard_settings: GuardSettings,
    body: bytes,
    path: str = "/classify",
    headers: dict | None = None,
    chunks: int = 1,
) -> tuple[int, dict, bytes | None]:
    """(status, JSON body or {}, body the app received or None)."""
    seen: dict = {}

    async def app(scope, receive, send):
        message = await receive()
        seen["body"] = message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    hdrs = {
        "content-type": f"multipart/form-data; boundary={B}",
        "host": "127.0.0.1:3000",
        **(headers or {}),
    }
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
    }
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    queue = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    sent: list[dict] = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestGuard(app, guard_settings)(scope, receive, send))
    status = sent[0]["status"]
    payload = json.loads(sent[1]["body"]) if status != 200 else {}
    return status, payload, seen.get("body")


def reason(result) -> str:
    return result[1]["error"]["reason"]


def test_an_accepted_form_reaches_the_app_unchanged() -> None:
    body = form(("image", b"\x89PNG...", "p.png"))
    status, _, seen = call(settings(), body, chunks=3)
    assert status == 200 and seen == body


@pytest.mark.parametrize(
    "body,expected",
    [
        (form(("picture", b"x", "p.png")), "unknown_field"),
        (form(("image", b"x", None)), "not_a_file"),
        (form(("image", b"x", "n" * 300)), "bad_filename"),
        (form(), "missing_field"),
        (form(("image", b"x", "a.png"), ("image", b"y", "b.png")), "too_many_images"),
        (form(("image", b"x" * 3000, "p.png")), "too_large"),
        (form(("image", b"x", "p.png"))[:-10], "bad_multipart"),
    ],
)
def test_malformed_forms_are_named(body: bytes, expected: str) -> None:
    assert reason(call(settings(), body)) == expected


def test_counts_and_body_size_are_checked_before_the_app() -> None:
    many = form(*[("images", b"x", f"{i}.png") for i in range(5)])
    assert reason(call(settings(), many, path="/classify_batch")) == "too_many_images"
    big = form(("image", b"x" * 1500, "p.png")) * 8  # > 10,000 bytes, sent chunked
    result = call(settings(), big, chunks=8)
    assert result[0] == 413 and reason(result) == "body_too_large"
    declared = call(settings(), b"", headers={"content-length": "99999"})
    assert declared[0] == 413
    assert (
        reason(call(settings(), b"", headers={"content-type": "application/x-www-form-urlencoded"}))
        == "unsupported_media_type"
    )


def test_api_key_and_cross_site_posts() -> None:
    body = form(("image", b"x", "p.png"))
    keyed = settings(api_key="k")
    assert call(keyed, body)[0] == 401
    assert call(keyed, body, headers={"authorization": "Bearer k"})[0] == 200
    assert call(keyed, body, headers={"x-api-key": "k"})[0] == 200
    assert (
        reason(call(settings(), body, headers={"origin": "http://evil.example"})) == "cross_origin"
    )
    assert call(settings(), body, headers={"origin": "http://127.0.0.1:3000"})[0] == 200
    allowed = settings(cors_origins=("https://pharmacy.example",))
    assert call(allowed, body, headers={"origin": "https://pharmacy.example"})[0] == 200
