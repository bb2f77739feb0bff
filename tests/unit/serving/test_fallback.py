"""Circuit breaker and model chain: a failing primary sends calls to the fallback, is retried
after reset_s, and answers again once it recovers; the one serving path uses them."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from rxvision.serving import (
    CircuitBreaker,
    ImageLimits,
    InvalidImage,
    ModelBusy,
    ModelChain,
    ModelOutput,
    ModelUnavailable,
    ServedModel,
    classify,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_reset() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, reset_s=10, clock=clock)
    assert breaker.allow() and not breaker.failure() and breaker.state == "closed"
    assert breaker.failure() and breaker.state == "open" and not breaker.allow()
    clock.now = 10
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    assert breaker.failure() and breaker.state == "open"  # the trial failed: open again
    clock.now = 20
    assert breaker.allow() and breaker.success() and breaker.state == "closed"


class FakePredictor:
    """Two classes; probabilities say which model answered."""

    def __init__(self, version: str, fail: bool = False) -> None:
        self.model_version, self.runtime, self.fail, self.calls = version, "fake", fail, 0

    def preprocess(self, images):
        return np.stack([img.mean(axis=(0, 1)) for img in images]).astype(np.float32)

    def to_predictions(self, output):
        from rxvision.serving import top_k_predictions

        return top_k_predictions(output.probs, ["a", "b"], 2, self.model_version)


def served(name: str, predictor: FakePredictor, clock: Clock) -> ServedModel:
    async def infer(batch):
        predictor.calls += 1
        if predictor.fail:
            raise RuntimeError("onnxruntime exploded")
        return ModelOutput(np.tile([0.9, 0.1], (len(batch), 1)), None)

    return ServedModel(name, predictor, infer, CircuitBreaker(failures=2, reset_s=5, clock=clock))


def png(colour=(10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_a_failing_primary_is_answered_by_the_fallback_and_retried_later() -> None:
    clock = Clock()
    primary, fallback = FakePredictor("2", fail=True), FakePredictor("1")
    events: list[tuple[str, str]] = []
    chain = ModelChain(
        [served("primary", primary, clock), served("fallback", fallback, clock)],
        listener=lambda event, model, detail: events.append((event, model.name)),
    )
    for _ in range(4):
        out = asyncio.run(classify([png()], chain, ImageLimits()))
        assert out.model.name == "fallback" and out.predictions[0].model_version == "1"
    assert primary.calls == 2  # the breaker opened after two failures
    assert chain.active.name == "fallback" and ("breaker_open", "primary") in events
    status = chain.status()
    assert (
        status["models"]["primary"]["breaker"] == "open"
        and "exploded" in status["models"]["primary"]["last_error"]
    )
    primary.fail = False
    clock.now = 5
    out = asyncio.run(classify([png()], chain, ImageLimits()))
    assert out.model.name == "primary" and chain.active.name == "primary"
    assert ("breaker_closed", "primary") in events


def test_when_every_model_fails_the_request_is_model_unavailable() -> None:
    clock = Clock()
    chain = ModelChain([served("primary", FakePredictor("2", fail=True), clock)])
    with pytest.raises(ModelUnavailable, match="onnxruntime exploded"):
        asyncio.run(classify([png()], chain, ImageLimits()))


def test_a_busy_model_is_not_a_model_failure() -> None:
    async def busy(batch):
        raise ModelBusy("queue full")

    model = ServedModel("primary", FakePredictor("2"), busy, CircuitBreaker(failures=1))
    with pytest.raises(ModelBusy):
        asyncio.run(classify([png()], ModelChain([model]), ImageLimits()))
    assert model.breaker.state == "closed" and model.errors == 0


def test_a_bad_image_fails_the_request_or_is_skipped_by_index() -> None:
    clock = Clock()
    chain = ModelChain([served("primary", FakePredictor("2"), clock)])
    with pytest.raises(InvalidImage) as err:
        asyncio.run(classify([png(), b"junk"], chain, ImageLimits()))
    assert err.value.index == 1
    out = asyncio.run(classify([b"junk", png()], chain, ImageLimits(), skip_invalid=True))
    assert out.indices == [1] and list(out.errors) == [0] and len(out.predictions) == 1
    assert out.to_dict()["predictions"][0]["label"] == "a"
