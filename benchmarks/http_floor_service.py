"""A BentoML service that reads the upload and answers a constant prediction: the cost of
BentoML's HTTP and multipart handling alone, with no model. bench_serving.py serves it as the
HTTP floor of the same round."""

from __future__ import annotations

from pathlib import Path

import bentoml

ANSWER = {
    "label": "pill",
    "confidence": 1.0,
    "top_k": [{"label": "pill", "probability": 1.0}],
    "model_version": "0",
}


@bentoml.service(name="http-floor", workers=1)
class HttpFloor:
    @bentoml.api(route="/classify")
    async def classify(self, image: Path) -> dict:
        Path(image).read_bytes()
        return ANSWER
