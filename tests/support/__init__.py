"""Helpers for the tests and benchmarks (tiny models, simulated traffic, a real `bentoml serve`);
not part of the product."""
