"""A ZenML alerter flavor that works offline: it POSTs each alert as JSON to a URL (a chat
webhook, an Alertmanager-style receiver, a local HTTP server), or, without a URL, appends it
to a JSON-lines file so that the local stack always has somewhere to put an alert.

Registered by ``stacks/local.yaml`` (``flavors:``); by hand:
``zenml alerter flavor register stacks.webhook_alerter.WebhookAlerterFlavor``.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field
from zenml.alerter.base_alerter import (
    BaseAlerter,
    BaseAlerterConfig,
    BaseAlerterFlavor,
    BaseAlerterStepParameters,
)

logger = logging.getLogger(__name__)
FLAVOR = "rxvision_webhook"


class WebhookAlerterParameters(BaseAlerterStepParameters):
    """Structured fields sent next to the message (e.g. where the drift report is)."""

    payload: dict[str, Any] = Field(default_factory=dict)


class WebhookAlerterConfig(BaseAlerterConfig):
    """url: where to POST (empty: append to ``file``); headers: e.g. an Authorization."""

    url: str = ""
    file: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 10.0


class WebhookAlerter(BaseAlerter):
    """POST ``{"text", "source", "sent_at", **payload}`` as JSON; True when accepted (2xx)."""

    @property
    def config(self) -> WebhookAlerterConfig:
        return self._config  # type: ignore[return-value]

    def post(self, message: str, params: BaseAlerterStepParameters | None = None) -> bool:
        body = {
            "text": message,
            "source": "rxvision",
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if isinstance(params, WebhookAlerterParameters):
            body.update(params.payload)
        cfg = self.config
        if not cfg.url:
            path = Path(cfg.file or "alerts.jsonl")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(json.dumps(body) + "\n")
            logger.info("alert written to %s (the alerter has no url)", path)
            return True
        request = urllib.request.Request(
            cfg.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **cfg.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                return 200 <= response.status < 300
        except OSError as exc:  # URLError, HTTPError, timeouts: the run goes on, loudly
            logger.error("alert NOT delivered to %s: %s", cfg.url, exc)
            return False

    def ask(self, question: str, params: BaseAlerterStepParameters | None = None) -> bool:
        """A webhook cannot answer: the question is posted and treated as not approved."""
        self.post(question, params)
        return False


class WebhookAlerterFlavor(BaseAlerterFlavor):
    @property
    def name(self) -> str:
        return FLAVOR

    @property
    def config_class(self) -> type[WebhookAlerterConfig]:
        return WebhookAlerterConfig

    @property
    def implementation_class(self) -> type[WebhookAlerter]:
        return WebhookAlerter
