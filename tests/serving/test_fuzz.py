"""Schema fuzzing: schemathesis generates requests for every operation of the real service's
/docs.json (valid and invalid bodies, odd headers); none may be answered 5xx, and the server
stays ready. Prints the number of probes and 5xx (docs/benchmarks.md records a run)."""

from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest

pytestmark = [pytest.mark.serving, pytest.mark.fuzz, pytest.mark.slow]

EXAMPLES = int(os.environ.get("RXVISION_FUZZ_EXAMPLES", "40"))  # per operation and mode


def test_schema_fuzzing_finds_no_5xx(server) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    stats: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def probe(case) -> None:
                response = case.call(base_url=server.url, timeout=60)
                stats["probes"] += 1
                stats[f"{response.status_code // 100}xx"] += 1
                if response.status_code >= 500:
                    # probe runs within this iteration, so the loop variables are the current ones
                    failures.append(f"{operation.label} {mode.value}: {response.status_code}")  # noqa: B023

            try:
                probe()
            except Unsatisfiable:  # e.g. no invalid body exists for an operation without inputs
                stats[f"no cases: {operation.label} {mode.value}"] += 1
    print(
        f"\nschemathesis: {stats['probes']} probes of {server.url}/docs.json, by class "
        f"{dict(sorted(stats.items()))}"
    )
    assert stats["probes"] >= EXAMPLES  # the schema had operations and they were probed
    assert not failures, failures[:5]
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
