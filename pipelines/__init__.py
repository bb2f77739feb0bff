"""ZenML pipelines. Each module exposes ``main(cfg, args) -> int`` for ``run.py`` (see its
docstring for the contract) next to the ``@pipeline`` function itself."""

from __future__ import annotations

from typing import Any

from rxvision.errors import RxVisionError


def with_run_options(pipeline: Any, options: dict[str, Any] | None) -> Any:
    """Apply the ``zenml:`` section of a run config (ZenML's pipeline options: settings,
    enable_cache, steps, run_name, ...; plus ``enable_cache: false`` from --no-cache)."""
    if not options:
        return pipeline
    options = dict(options)
    steps = options.pop("steps", None)
    try:
        return pipeline.with_options(steps=steps, **options)
    except (TypeError, ValueError) as exc:
        raise RxVisionError(
            f"bad `zenml:` run options {sorted(options)}: {exc}",
            "use ZenML pipeline options (settings, enable_cache, steps, run_name, extra)",
        ) from None
