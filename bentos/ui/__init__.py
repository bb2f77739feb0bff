"""The upload page for people, mounted into the Bento at /ui (bentos/service.py): one static
HTML file that posts the photo to /classify and shows the answer, the candidate set and the
confidence. Plain Starlette (a BentoML dependency): no build step, no external assets."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE = Path(__file__).with_name("index.html")


def page_app() -> Starlette:
    """An ASGI app: GET / under the mount path is the page."""
    html = PAGE.read_text(encoding="utf-8")

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; "
                "img-src 'self' blob:; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'",
            },
        )

    return Starlette(routes=[Route("/", index)])
