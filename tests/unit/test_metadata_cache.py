"""pipelines.metadata_cache: ZenML's repeated packages_distributions() is read once."""

from __future__ import annotations

import importlib.metadata

import pytest

from pipelines import metadata_cache


@pytest.fixture
def counted(monkeypatch):
    """The uncached function replaced by a counting one (restored afterwards)."""
    calls = []

    def fake() -> dict[str, list[str]]:
        calls.append(1)
        return {"numpy": ["numpy"], "yaml": ["PyYAML"]}

    monkeypatch.setattr(importlib.metadata, "packages_distributions", fake)
    yield calls
    metadata_cache.uninstall()


def test_packages_distributions_is_read_once_per_process(counted):
    assert metadata_cache.install() is True
    assert metadata_cache.install() is False  # idempotent: no cache around the cache
    first = importlib.metadata.packages_distributions()
    first["numpy"].append("changed by a caller")
    second = importlib.metadata.packages_distributions()
    assert second == {"numpy": ["numpy"], "yaml": ["PyYAML"]}
    assert len(counted) == 1


def test_a_new_import_path_reads_the_metadata_again(counted, monkeypatch):
    metadata_cache.install()
    importlib.metadata.packages_distributions()
    monkeypatch.syspath_prepend("/nonexistent-rxvision-test-path")
    importlib.metadata.packages_distributions()
    assert len(counted) == 2


def test_uninstall_restores_the_uncached_function(counted):
    metadata_cache.install()
    metadata_cache.uninstall()
    importlib.metadata.packages_distributions()
    importlib.metadata.packages_distributions()
    assert len(counted) == 2


def test_the_cached_answer_equals_the_stdlib_answer():
    # an earlier pipeline test in this process may have installed the cache already
    current = importlib.metadata.packages_distributions
    original = getattr(current, "__wrapped__", current)
    metadata_cache.uninstall()
    assert importlib.metadata.packages_distributions is original
    try:
        assert metadata_cache.install() is True
        assert importlib.metadata.packages_distributions() == original()
    finally:
        metadata_cache.uninstall()
        restored = importlib.metadata.packages_distributions
        importlib.metadata.packages_distributions = current  # the process as it was
    assert restored is original
