"""Fallback models and circuit breakers: a primary model that keeps failing stops getting
requests for a while (they go to the fallback) and is tried again later."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class CircuitBreaker:
    """closed: calls go through; after ``failures`` consecutive failures: open (no calls) for
    ``reset_s``; then half-open: one trial call, whose outcome closes or reopens it."""

    def __init__(
        self, failures: int = 3, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max(1, int(failures))
        self.reset_s = float(reset_s)
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        """Whether a call may go to this model now (half-open lets one trial through)."""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        with self._lock:
            was_open = self.opened_at is not None
            self.failures, self.opened_at, self._trial = 0, None, False
            return was_open

    def failure(self) -> bool:
        """Record a failure; True when this (re)opened the breaker."""
        with self._lock:
            self.failures += 1
            reopen = self._trial or (self.opened_at is None and self.failures >= self.max_failures)
            self._trial = False
            if reopen:
                self.opened_at = self.clock()
            return reopen


@dataclass
class ServedModel:
    """A loaded model (a ``Predictor``), the coroutine that calls it (through the service's
    batcher, or directly) and its breaker."""

    name: str
    predictor: Any
    infer: Callable[[Any], Awaitable[Any]]
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    errors: int = 0
    last_error: str | None = None


# listener(event, model, detail): "failure", "breaker_open", "breaker_closed"
Listener = Callable[[str, ServedModel, str], None]


class ModelChain:
    """Models in order of preference (primary first); ``load_errors`` names the models that
    could not be loaded at all (a failed sha256 check, a corrupt file)."""

    def __init__(
        self,
        models: Sequence[ServedModel],
        load_errors: dict[str, str] | None = None,
        listener: Listener | None = None,
    ) -> None:
        if not models:
            raise ValueError("a ModelChain needs at least one model")
        self.models = list(models)
        self.load_errors = dict(load_errors or {})
        self.listener = listener

    def _emit(self, event: str, model: ServedModel, detail: str) -> None:
        if self.listener is not None:
            self.listener(event, model, detail)

    def candidates(self) -> Iterator[ServedModel]:
        """The models to try for one call, in order; the last model is always tried (there is
        nothing behind it to protect)."""
        for i, model in enumerate(self.models):
            if model.breaker.allow() or i == len(self.models) - 1:
                yield model

    def failed(self, model: ServedModel, exc: BaseException) -> None:
        model.errors += 1
        model.last_error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("model %s failed: %s", model.name, model.last_error)
        self._emit("failure", model, model.last_error)
        if model.breaker.failure():
            log.error("breaker of model %s is open for %.0f s", model.name, model.breaker.reset_s)
            self._emit("breaker_open", model, model.last_error)

    def succeeded(self, model: ServedModel) -> None:
        if model.breaker.success():
            log.warning("model %s answers again; its breaker is closed", model.name)
            self._emit("breaker_closed", model, "")

    @property
    def active(self) -> ServedModel:
        """The model the next call goes to (the first whose breaker is not open)."""
        return next((m for m in self.models if m.breaker.state != "open"), self.models[-1])

    def status(self) -> dict[str, Any]:
        """What /model_info shows: which model serves, each model's breaker and errors."""
        return {
            "active": self.active.name,
            "models": {
                m.name: {
                    "model_version": m.predictor.model_version,
                    "runtime": m.predictor.runtime,
                    "breaker": m.breaker.state,
                    "errors": m.errors,
                    "last_error": m.last_error,
                }
                for m in self.models
            },
            "load_errors": dict(self.load_errors),
        }
