"""What a study leaves for people: Optuna's plots as self-contained HTML, and the best trial
as a run config that ``python run.py --config`` accepts."""

from __future__ import annotations

import html
from typing import Any

import optuna
import yaml

from rxvision.config import RxVisionConfig, load_config
from rxvision.tuning.space import apply_params

PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinates": "plot_parallel_coordinate",
}
# sections of the config that a training run does not read
_NOT_WRITTEN = ("profile", "tuning")


def _placeholder(title: str, reason: str) -> str:
    return f"<html><body><h3>{html.escape(title)}</h3><p>{html.escape(reason)}</p></body></html>"


def study_plots(study: optuna.Study) -> dict[str, str]:
    """Each plot as a full HTML page with plotly.js inline (the dashboard has no network);
    a plot the study cannot have yet (importances need two completed trials) says why."""
    from optuna import visualization

    out = {}
    for name, fn in PLOTS.items():
        title = name.replace("_", " ")
        try:
            figure = getattr(visualization, fn)(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out[name] = _placeholder(title, f"not available for this study yet: {exc}")
            continue
        figure.update_layout(title=f"{study.study_name}: {title}")
        out[name] = figure.to_html(full_html=True, include_plotlyjs=True)
    return out


def _diff(value: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The leaves of ``value`` that differ from ``base`` (nested like the config)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        ref = base.get(key)
        if isinstance(item, dict) and isinstance(ref, dict):
            sub = _diff(item, ref)
            if sub:
                out[key] = sub
        elif item != ref:
            out[key] = item
    return out


def best_run_config(base: RxVisionConfig, params: dict[str, Any]) -> dict[str, Any]:
    """The sections a run config needs, on top of ``base``'s profile, to train exactly what
    the best trial trained: the trial's parameters plus whatever the base config already
    changed from the profile (data path, epochs, ...)."""
    tuned = apply_params(base, params).model_dump(mode="json")
    profile = load_config(base.profile).model_dump(mode="json")
    for section in _NOT_WRITTEN:
        tuned.pop(section, None)
        profile.pop(section, None)
    return _diff(tuned, profile)


def best_config_yaml(base: RxVisionConfig, outcome: dict[str, Any]) -> str:
    """The best run config as YAML text in ZenML's run-config format (the profile and the
    sections under ``parameters.config``, as configs/training.yaml), so both ``run.py
    --config`` and ``zenml pipeline run ... -c`` read it; a header says where it came from."""
    best = outcome["best"]
    sections = best_run_config(base, best["params"])
    lines = [
        (
            f"# Best trial {best['number']} of Optuna study '{outcome['study_name']}' "
            f"({outcome['metric']} {best['value']:.4f} on the validation split)."
        ),
        "# Tuned:",
        *(f"#   {key}: {value!r}" for key, value in best["params"].items()),
        "# A ZenML run config: RxVision sections on top of the profile under parameters.config.",
        "# Train and gate it with",
        "#   python run.py --pipeline training --config THIS_FILE",
        "#   zenml pipeline run pipelines.training.training_pipeline -c THIS_FILE",
    ]
    # the keys pipelines.read_run_config reads (the library does not import the pipelines)
    document = {"parameters": {"config": {"profile": base.profile, **sections}}}
    return "\n".join(lines) + "\n" + yaml.safe_dump(document, sort_keys=False)
