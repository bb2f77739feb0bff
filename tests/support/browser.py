"""Debian's system Chromium driven by Playwright, for the browser tests (the upload page, the
ZenML dashboard): one place for the binary, its headless flags and the skip reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-sync",
    "--metrics-recording-only",
    "--disable-dev-shm-usage",
]


def sync_playwright() -> Any:
    """Playwright's sync API, or the test skipped with what to install."""
    if not CHROMIUM.is_file():
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    return api.sync_playwright()


def launch(p: Any) -> Any:
    """The system Chromium, headless."""
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
