"""Malformed requests over a raw socket against the real service: every answer is < 500 (a
4xx JSON error in the service's shape where the request reaches the guard), and the server is
ready afterwards. Also cross-site POSTs and the tiny long images that used to take GBs."""

from __future__ import annotations

import io
import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.serving

BOUNDARY = "rxvisionboundary"


def png(size: tuple[int, int] = (40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def part(name: str, data: bytes, filename: str | None = "p.png", ctype: str = "image/png") -> bytes:
    disposition = f'form-data; name="{name}"' + (
        f'; filename="{filename}"' if filename is not None else ""
    )
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename is not None:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request(
    path: str,
    body: bytes,
    ctype: str | None = f"multipart/form-data; boundary={BOUNDARY}",
    extra: str = "",
    length: str | None = None,
) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body) if length is None else length}\r\n" + extra + "\r\n"
    return head.encode() + body


def exchange(
    url: str, raw: bytes, pause_after: int | None = None, pause_s: float = 0.0, timeout: float = 30
) -> tuple[int, bytes]:
    """Send ``raw`` (optionally stalling after ``pause_after`` bytes) and read the answer:
    (status, body); status 0 when the server closed without answering."""
    target = urlparse(url)
    with socket.create_connection((target.hostname, target.port), timeout=timeout) as sock:
        try:
            if pause_after is None:
                sock.sendall(raw)
            else:
                sock.sendall(raw[:pause_after])
                time.sleep(pause_s)
                sock.sendall(raw[pause_after:])
        except OSError:
            pass  # the server may answer and close before it has read everything
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/"):
        return 0, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def reason_of(body: bytes) -> str:
    return json.loads(body)["error"]["reason"]


many_files = form(*[part("images", png((8, 8)), f"{i}.png") for i in range(1001)])

GUARDED = {
    # name: (raw request, expected status, expected reason)
    "multipart_without_boundary": (
        request("/classify", form(part("image", png())), ctype="multipart/form-data"),
        400,
        "bad_multipart",
    ),
    "multipart_with_a_wrong_boundary": (
        request(
            "/classify", form(part("image", png())), ctype="multipart/form-data; boundary=other"
        ),
        400,
        "bad_multipart",
    ),
    "wrong_field_name": (request("/classify", form(part("picture", png()))), 400, "unknown_field"),
    "text_value_where_the_file_goes": (
        request("/classify", form(part("image", b"hello", filename=None))),
        400,
        "not_a_file",
    ),
    "urlencoded_body": (
        request("/classify", b"image=abc", ctype="application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    ),
    "no_content_type": (request("/classify", b"abc", ctype=None), 415, "unsupported_media_type"),
    "file_name_of_300_characters": (
        request("/classify", form(part("image", png(), "x" * 296 + ".png"))),
        400,
        "bad_filename",
    ),
    "extra_2mb_text_field": (
        request(
            "/classify", form(part("image", png()), part("note", b"a" * 2_000_000, filename=None))
        ),
        413,
        "body_too_large",
    ),
    "1001_files_to_classify_batch": (
        request("/classify_batch", many_files),
        413,
        "too_many_images",
    ),
    "two_files_to_classify": (
        request("/classify", form(part("image", png()), part("image", png()))),
        400,
        "too_many_images",
    ),
    "empty_form": (request("/classify_batch", form()), 400, "empty_batch"),
    "content_length_over_the_cap": (
        request("/classify", b"", length="999999999"),
        413,
        "body_too_large",
    ),
    "truncated_multipart": (
        request("/classify", form(part("image", png()))[:-30]),
        400,
        "bad_multipart",
    ),
    "json_images_to_classify": (
        request("/classify", b'{"image": "aGVsbG8="}', ctype="application/json"),
        415,
        "unsupported_media_type",
    ),
    "bad_json_to_model_info": (
        request("/model_info", b"{not json", ctype="application/json"),
        400,
        "bad_json",
    ),
}


@pytest.mark.parametrize("case", sorted(GUARDED))
def test_malformed_request_is_a_4xx_json_error_naming_the_problem(server, case: str) -> None:
    raw, status, reason = GUARDED[case]
    got, body = exchange(server.url, raw)
    assert got == status, body[:300]
    assert reason_of(body) == reason
    assert json.loads(body)["error"]["message"]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


PROTOCOL = {
    # requests the HTTP parser itself refuses or the guard answers; all must stay < 500
    "chunked_garbage": (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\nzz\r\nnot hex\r\n"
    ).encode(),
    "chunked_over_the_cap": (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    + chunked(*[b"a" * 500_000] * 4),
    "huge_headers": (
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(200))
        + "\r\n"
    ).encode(),
    "negative_content_length": request("/classify", b"", length="-5"),
    "content_length_not_a_number": request("/classify", form(part("image", png())), length="12abc"),
    "content_length_and_chunked": (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "not_http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
}


@pytest.mark.parametrize("case", sorted(PROTOCOL))
def test_protocol_garbage_is_never_a_5xx(server, case: str) -> None:
    status, body = exchange(server.url, PROTOCOL[case])
    assert status < 500, (status, body[:300])
    if case == "chunked_over_the_cap":
        assert status == 413 and reason_of(body) == "body_too_large"


def test_a_client_that_stalls_mid_body_is_answered_408(server) -> None:
    raw = request("/classify", form(part("image", png())))
    status, body = exchange(
        server.url, raw, pause_after=len(raw) - 20, pause_s=3.5
    )  # body_timeout_s=2
    assert status == 408 and reason_of(body) == "body_timeout"


def test_a_client_that_declares_more_than_it_sends_is_answered_408(server) -> None:
    raw = request("/classify", form(part("image", png())), length="5000")
    status, body = exchange(server.url, raw)
    assert status == 408 and reason_of(body) == "body_timeout"


def test_cross_site_posts_are_refused_and_same_origin_posts_pass(server) -> None:
    files = {"image": ("p.png", png(), "image/png")}
    evil = httpx.post(
        f"{server.url}/classify", files=files, headers={"Origin": "http://evil.example"}, timeout=30
    )
    assert evil.status_code == 403 and evil.json()["error"]["reason"] == "cross_origin"
    host = urlparse(server.url).netloc
    same = httpx.post(
        f"{server.url}/classify", files=files, headers={"Origin": f"http://{host}"}, timeout=30
    )
    assert same.status_code == 200, same.text


def test_server_is_ready_after_every_malformed_request(server) -> None:
    for raw, _, _ in GUARDED.values():
        assert exchange(server.url, raw)[0] < 500
    for raw in PROTOCOL.values():
        assert exchange(server.url, raw)[0] < 500
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    ok = httpx.post(
        f"{server.url}/classify", files={"image": ("p.png", png(), "image/png")}, timeout=30
    )
    assert ok.status_code == 200, ok.text
