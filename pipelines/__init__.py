"""ZenML pipelines. Each module exposes ``main(cfg, args) -> int`` for ``run.py`` (see its
docstring for the contract) next to the ``@pipeline`` function itself.

Pipelines take the validated config as a typed parameter (:data:`RunConfig`), so a run
config in ZenML's own YAML format works for both ``python run.py --config FILE`` and
``zenml pipeline run pipelines.training.training_pipeline -c FILE``::

    parameters:
      config:            # RxVision sections (src/rxvision/config.py) on top of the profile
        profile: demo
        training: {epochs: 3}
    enable_cache: true   # any other key: ZenML run options (settings, steps, model, ...)
    steps:
      train_model: {enable_cache: false}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

from rxvision.config import RxVisionConfig, load_config, read_yaml
from rxvision.errors import RxVisionError


def layer_on_profile(value: Any) -> Any:
    """A config given as a mapping (a run config's ``parameters.config``) is layered on its
    profile (``profile:``, default demo) the way ``run.py --config`` layers it."""
    if isinstance(value, dict):
        sections = dict(value)
        return load_config(str(sections.pop("profile", None) or "demo"), sections)
    return value


# The pipelines' config parameter: the one schema, validated; a mapping is profile-layered.
RunConfig = Annotated[RxVisionConfig, BeforeValidator(layer_on_profile)]

CONFIG_PARAMETER = "config"


def read_run_config(path: Path | None) -> tuple[str | None, dict[str, Any] | None, dict[str, Any]]:
    """Split a run config in ZenML's format into (profile, RxVision sections, ZenML options).

    The sections come from ``parameters.config``; every other key (and the other
    ``parameters``) stays a ZenML run option for ``pipeline.with_options``.
    """
    if path is None:
        return None, None, {}
    data = read_yaml(path)
    # `model:` is also ZenML's key (the Model of the run): not a sign of the old format
    old_style = [k for k in RxVisionConfig.model_fields if k in data and k != "model"]
    if "zenml" in data or old_style:
        raise RxVisionError(
            f"{path} is not a ZenML run config (RxVision sections at the top level)",
            "put the RxVision sections under `parameters: {config: {...}}` and ZenML options "
            "(settings, steps, enable_cache) at the top level; see configs/training.yaml",
        )
    parameters = data.pop("parameters", None) or {}
    if not isinstance(parameters, dict):
        raise RxVisionError(f"`parameters:` of {path} must be a mapping")
    sections = parameters.pop(CONFIG_PARAMETER, None) or {}
    if not isinstance(sections, dict):
        raise RxVisionError(f"`parameters.config` of {path} must be a mapping of config sections")
    sections = dict(sections)
    profile = sections.pop("profile", None)
    if parameters:
        data["parameters"] = parameters
    return (str(profile) if profile else None), sections, data


def with_run_options(pipeline: Any, options: dict[str, Any] | None) -> Any:
    """Apply a run config's ZenML options (settings, enable_cache, steps, run_name, model,
    parameters other than the config; plus ``enable_cache: false`` from --no-cache)."""
    if not options:
        return pipeline
    options = dict(options)
    steps = options.pop("steps", None)
    if isinstance(options.get("model"), dict):
        from zenml import Model

        options["model"] = Model.model_validate(options["model"])
    try:
        return pipeline.with_options(steps=steps, **options)
    except (TypeError, ValueError) as exc:
        raise RxVisionError(
            f"bad ZenML run options {sorted(options)}: {exc}",
            "use ZenML pipeline options (settings, enable_cache, steps, run_name, model, extra)",
        ) from None


def call_pipeline(pipeline: Any, **params: Any) -> Any:
    """Run ``pipeline(**params)`` and return the run; a step's RxVisionError that ZenML
    wrapped is raised as itself, so callers see the one-line user error."""
    from pipelines import metadata_cache
    from rxvision.errors import find_user_error

    metadata_cache.install()  # ZenML's source resolution re-reads every package's metadata
    try:
        return pipeline(**params)
    except RxVisionError:
        raise
    except Exception as exc:
        cause = find_user_error(exc)
        if cause is not None:
            raise cause from None
        raise
