"""ASGI middleware in front of the BentoML app: what a request may be before BentoML parses it.

BentoML 1.4 spools a multipart body to disk and reads it into memory before any limit of
ours applies, and answers a malformed form with a 500. This guard, added with
``RxVision.add_asgi_middleware``, answers in the service's own error shape
(``{"error": {"reason", "message", "hint"}}``) before the app sees the request:

- 401 without the API key (when one is configured); /livez, /readyz, /healthz stay open and
  /metrics too where ``metrics_public``;
- 403 for a browser POST from another origin (not same-origin, not in ``cors_origins``);
- 503 + Retry-After when the worker already holds ``max_in_flight`` model requests;
- 413 for a body over ``max_request_bytes`` (declared by Content-Length or counted while a
  chunked body arrives), 400 for a bad Content-Length, 408 for a body that takes longer
  than ``body_timeout_s``;
- for the image APIs, the multipart form is parsed from memory first: its boundary, field
  names, file parts, file names, part sizes and number of files; the checked body is then
  replayed to BentoML unchanged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

log = logging.getLogger("rxvision.guard")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
MAX_FILENAME = 255


@dataclass(frozen=True)
class ImageRoute:
    """A multipart image API: its file field and whether it takes several files."""

    field: str
    multiple: bool


@dataclass(frozen=True)
class GuardSettings:
    image_routes: dict[str, ImageRoute]
    json_routes: frozenset[str]
    max_request_bytes: int
    max_image_bytes: int
    max_images: int
    max_in_flight: int
    body_timeout_s: float
    retry_after_s: int
    api_key: str | None = None
    metrics_public: bool = False
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    on_reject: Callable[[str], None] | None = None  # counts refusals by reason (/metrics)


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.hint = status, reason, message, hint


def error_body(reason: str, message: str, hint: str | None = None) -> bytes:
    """The service's error shape (the same the API methods answer with)."""
    body: dict[str, Any] = {"reason": reason, "message": message}
    if hint:
        body["hint"] = hint
    return json.dumps({"error": body}).encode()


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: Any, settings: GuardSettings) -> None:
        self.app = app
        self.s = settings
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path = scope.get("path", "")
        try:
            self._check_access(scope, headers, path)
        except Refused as exc:
            await self._refuse(send, exc)
            return
        image_route = self.s.image_routes.get(path)
        if scope["method"] != "POST" or (image_route is None and path not in self.s.json_routes):
            await self.app(scope, receive, send)
            return
        if image_route is not None and self.in_flight >= self.s.max_in_flight:
            await self._refuse(
                send,
                Refused(
                    503,
                    "overloaded",
                    f"{self.in_flight} requests already in flight",
                    f"retry after {self.s.retry_after_s} s",
                ),
                [(b"retry-after", str(self.s.retry_after_s).encode())],
            )
            return
        self.in_flight += image_route is not None
        try:
            try:
                body = await self._read_body(headers, receive)
                if image_route is not None:
                    _check_image_form(headers, body, image_route, self.s)
                else:
                    _check_json(headers, body)
            except Refused as exc:
                await self._refuse(send, exc)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= image_route is not None

    async def _refuse(
        self, send: Send, exc: Refused, headers: list[tuple[bytes, bytes]] = ()
    ) -> None:
        if self.s.on_reject is not None:
            self.s.on_reject(exc.reason)
        extra = [(b"www-authenticate", b'Bearer realm="rxvision"')] if exc.status == 401 else []
        await _respond(
            send, exc.status, error_body(exc.reason, exc.message, exc.hint), [*headers, *extra]
        )

    def _check_access(self, scope: Scope, headers: dict[str, str], path: str) -> None:
        if path in OPEN_PATHS:
            return
        if self.s.api_key and not (path == "/metrics" and self.s.metrics_public):
            given = headers.get("x-api-key") or ""
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.s.api_key.encode()):
                raise Refused(
                    401,
                    "unauthorized",
                    "this service needs an API key",
                    "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                )
        origin = headers.get("origin")
        if (
            origin
            and scope["method"] not in ("GET", "HEAD")
            and not self._origin_allowed(origin, headers)
        ):
            raise Refused(
                403,
                "cross_origin",
                f"requests from the web page at {origin} are not allowed",
                "list the origin in serving.cors_origins to allow it",
            )

    def _origin_allowed(self, origin: str, headers: dict[str, str]) -> bool:
        if origin in self.s.cors_origins or "*" in self.s.cors_origins:
            return True
        host = headers.get("host", "")
        return bool(host) and origin.split("://", 1)[-1] == host  # same origin

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        cap = self.s.max_request_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise Refused(
                    400, "bad_content_length", f"Content-Length {declared[:40]!r} is not a number"
                )
            if int(declared) > cap:
                raise Refused(
                    413,
                    "body_too_large",
                    f"the body declares {int(declared)} bytes; the limit is {cap}",
                    "send fewer or smaller images per request",
                )
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.s.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise Refused(
                    408,
                    "body_timeout",
                    f"the body took longer than {self.s.body_timeout_s:g} s",
                    "send the request at once, on a faster connection",
                ) from None
            if message["type"] == "http.disconnect":
                raise Refused(
                    400, "client_disconnected", "the client went away before sending its body"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise Refused(
                    413,
                    "body_too_large",
                    f"the body is over the limit of {cap} bytes",
                    "send fewer or smaller images per request",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _replay(body: bytes, receive: Receive) -> Receive:
    """The checked body, once; afterwards the real channel (disconnect notices)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _check_json(headers: dict[str, str], body: bytes) -> None:
    if not body.strip():
        return
    if not headers.get("content-type", "").lower().startswith("application/json"):
        raise Refused(
            415,
            "unsupported_media_type",
            "this API takes a JSON body",
            "send Content-Type: application/json",
        )
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise Refused(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Refused(400, "bad_json", "the JSON body must be an object")


def _check_image_form(
    headers: dict[str, str], body: bytes, route: ImageRoute, s: GuardSettings
) -> None:
    """Parse the multipart form from memory and refuse what BentoML would fail on."""
    ctype, options = parse_options_header(headers.get("content-type", ""))
    hint = f"send the image(s) as multipart/form-data files in the field '{route.field}'"
    if ctype == b"application/json" and route.multiple:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise Refused(400, "bad_json", "the body is not valid JSON", hint) from None
        if value == {route.field: []}:
            return  # no images: the service answers empty_batch
        raise Refused(415, "unsupported_media_type", "images cannot be sent as JSON", hint)
    if ctype != b"multipart/form-data":
        shown = ctype.decode("latin-1")[:80] or "none"
        raise Refused(
            415, "unsupported_media_type", f"Content-Type {shown} is not multipart/form-data", hint
        )
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise Refused(
            400, "bad_multipart", "the multipart Content-Type has no usable boundary", hint
        )
    parts = _parse_parts(body, boundary, route, s, hint)
    if not parts:
        if route.multiple:
            raise Refused(400, "empty_batch", "no images in the request", hint)
        raise Refused(400, "missing_field", f"no file in the field '{route.field}'", hint)
    if not route.multiple and len(parts) > 1:
        raise Refused(
            400,
            "too_many_images",
            f"{len(parts)} files in '{route.field}'; this API takes one",
            "use /classify_batch for several images",
        )


def _parse_parts(
    body: bytes, boundary: bytes, route: ImageRoute, s: GuardSettings, hint: str
) -> list[int]:
    """Sizes of the file parts; raises Refused on the first part that is wrong."""
    sizes: list[int] = []
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "size": 0}

    def on_part_begin() -> None:
        state.update(headers={}, size=0)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state.update(field=b"", value=b"")

    def on_headers_finished() -> None:
        disposition, params = parse_options_header(
            state["headers"].get(b"content-disposition", b"")
        )
        name = params.get(b"name", b"").decode("latin-1")
        if disposition != b"form-data" or not name:
            raise Refused(400, "bad_multipart", "a part of the form has no form-data name", hint)
        if name != route.field:
            raise Refused(400, "unknown_field", f"unexpected form field {name[:60]!r}", hint)
        filename = params.get(b"filename")
        if filename is None:
            raise Refused(
                400, "not_a_file", f"the field '{name}' holds a text value, not a file", hint
            )
        if len(filename) > MAX_FILENAME:
            raise Refused(
                400,
                "bad_filename",
                f"a file name of {len(filename)} characters (the limit is {MAX_FILENAME})",
                "rename the file",
            )
        if len(sizes) >= s.max_images:
            raise Refused(
                413,
                "too_many_images",
                f"more than {s.max_images} images in one request; the limit is {s.max_images}",
                "split the images over several requests",
            )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["size"] += end - start
        if state["size"] > s.max_image_bytes:
            raise Refused(
                413,
                "too_large",
                f"image {len(sizes)} is over the limit of {s.max_image_bytes} bytes",
                "send a smaller (resized or recompressed) image",
            )

    def on_part_end() -> None:
        sizes.append(state["size"])

    done = {"end": False}
    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": lambda: done.update(end=True),
    }
    try:
        parser = MultipartParser(boundary, callbacks, max_header_count=8, max_header_size=4224)
        parser.write(body)
        parser.finalize()
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several error types
        raise Refused(
            400, "bad_multipart", f"the multipart body could not be parsed ({str(exc)[:120]})", hint
        ) from None
    if not done["end"]:
        raise Refused(
            400,
            "bad_multipart",
            "the multipart body does not end with its closing boundary "
            "(wrong boundary, or truncated)",
            hint,
        )
    return sizes
