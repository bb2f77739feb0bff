"""Shared test setup: telemetry off and a headless plotting backend before anything imports."""

import os

from rxvision.telemetry import disable_telemetry

disable_telemetry()
os.environ.setdefault("MPLBACKEND", "Agg")
