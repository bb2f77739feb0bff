"""Telemetry of the tools we use is off unless the user switched it on.

Offline, telemetry calls also wait on a network that is not there. ``setdefault`` keeps any
value the user set (e.g. ZENML_ANALYTICS_OPT_IN=true switches ZenML's back on).
"""

from __future__ import annotations

import os

TELEMETRY_DEFAULTS = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_AUTO_OPEN_DASHBOARD": "false",
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "WHYLOGS_NO_ANALYTICS": "True",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DO_NOT_TRACK": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def disable_telemetry() -> None:
    """Set the opt-out variables, leaving any the user already set. Call before importing
    zenml, bentoml, mlflow, whylogs or albumentations."""
    for key, value in TELEMETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)
