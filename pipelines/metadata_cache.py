"""A per-process cache for ``importlib.metadata.packages_distributions`` (a ZenML cost).

ZenML 0.98 resolves the source of each artifact's data type and materializer; for one that
comes from an installed package (``pandas.DataFrame``, ...) ``zenml.utils.source_utils.
_get_package_for_module`` calls ``packages_distributions()``, which reads the file list of
every installed distribution (about 300 in this venv: 0.5 s of CPU, 2.5 s wall on a busy
disk) and is not cached, so a training run paid it several times. The answer changes only
when packages are installed, so it is kept per ``sys.path``. This wraps a stdlib function
(ZenML imports it at call time, so wrapping it is the only hook there is); ``install`` does
nothing where the function is missing, and is idempotent.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable, Mapping

_MARK = "_rxvision_cached"


def install() -> bool:
    """Cache ``importlib.metadata.packages_distributions`` in this process; False when it
    was cached already or does not exist."""
    original = getattr(importlib.metadata, "packages_distributions", None)
    if not callable(original) or getattr(original, _MARK, False):
        return False
    cache: dict[tuple[str, ...], Mapping[str, list[str]]] = {}

    def packages_distributions() -> Mapping[str, list[str]]:
        key = tuple(sys.path)
        if key not in cache:
            cache[key] = original()
        return {name: list(dists) for name, dists in cache[key].items()}  # callers may mutate

    setattr(packages_distributions, _MARK, True)
    packages_distributions.__wrapped__ = original  # type: ignore[attr-defined]
    importlib.metadata.packages_distributions = packages_distributions  # type: ignore[assignment]
    return True


def uninstall() -> None:
    """Back to the uncached function (benchmarks compare the two)."""
    current: Callable[..., object] = importlib.metadata.packages_distributions
    if getattr(current, _MARK, False):
        importlib.metadata.packages_distributions = current.__wrapped__  # type: ignore[attr-defined]
