"""The search space: which config keys a trial sets, checked against the config schema before
any trial runs, and how a trial's parameters become a validated RxVisionConfig.

Keys are dotted config paths (``training.optimizer.lr``, ``data.image_size``, ...) plus one
derived knob, ``augmentation_strength``: a factor on the base config's augmentation (see
:func:`scale_augmentation`), so one number searches "how much augmentation" instead of a
dozen.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from rxvision.config import RxVisionConfig, SearchParamConfig, config_from_dict
from rxvision.errors import RxVisionError

AUGMENTATION_STRENGTH = "augmentation_strength"
# augmentation fields that a strength factor multiplies (probabilities and magnitudes);
# scale_min (the smallest crop share) moves towards 1 instead: less cropping when weaker
_SCALED = (
    "hflip",
    "vflip",
    "rotate90",
    "affine",
    "shift_limit",
    "scale_limit",
    "rotate_limit",
    "color_jitter",
    "brightness",
    "contrast",
    "saturation",
    "hue",
)
_NOT_TUNABLE = ("profile", "tuning")


@dataclass(frozen=True)
class Param:
    """One resolved dimension: its Optuna kind and bounds or choices."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter for an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _field_annotation(key: str) -> Any:
    """The schema annotation of a dotted config key; a bad key is a user error naming it."""
    parts = key.split(".")
    if parts[0] in _NOT_TUNABLE:
        raise RxVisionError(
            f"search-space key '{key}' cannot be tuned",
            "tune data, model, training or evaluation keys",
        )
    model: type[BaseModel] = RxVisionConfig
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the top level"
            raise RxVisionError(
                f"unknown search-space key '{key}'",
                f"known keys under {where}: {', '.join(sorted(model.model_fields))}",
            )
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if depth == len(parts) - 1:
                raise RxVisionError(
                    f"search-space key '{key}' names a section, not a value",
                    f"use one of its keys: {', '.join(sorted(ann.model_fields))}",
                )
            model = ann
        elif depth < len(parts) - 1:
            raise RxVisionError(
                f"unknown search-space key '{key}'",
                f"'{'.'.join(parts[: depth + 1])}' is a value, not a section",
            )
    return ann


def _numeric_kind(annotation: Any) -> str | None:
    """'int' or 'float' for numeric fields (``int | None`` counts as int), else None."""
    args = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else ()
    )
    members = set(args or (annotation,)) - {type(None)}
    if members == {int}:
        return "int"
    if members and members <= {int, float}:
        return "float"
    return None


def resolve_param(key: str, spec: SearchParamConfig) -> Param:
    """Turn one search-space entry into a Param, its kind taken from the schema."""
    if key == AUGMENTATION_STRENGTH:
        kind = "float"
    else:
        kind = _numeric_kind(_field_annotation(key))
    if spec.choices is not None:
        return Param(key, "categorical", choices=tuple(spec.choices))
    if kind is None:
        raise RxVisionError(
            f"search-space key '{key}' is not a number, so it cannot have a range",
            "give it `choices: [...]` instead of low/high",
        )
    if kind == "int":
        for name, value in (("low", spec.low), ("high", spec.high), ("step", spec.step)):
            if value is not None and float(value) != int(value):
                raise RxVisionError(
                    f"search-space key '{key}' is an integer setting, but its {name} is {value}",
                    "give whole numbers",
                )
    return Param(key, kind, spec.low, spec.high, spec.log, spec.step)  # type: ignore[arg-type]


def scale_augmentation(augmentation: dict[str, Any], strength: float) -> dict[str, Any]:
    """The augmentation section with probabilities and magnitudes times ``strength`` (0: none,
    1: as configured), each clipped to its schema bound; crops shrink towards none as
    strength falls (scale_min -> 1)."""
    from rxvision.config import AugmentationConfig

    if strength < 0:
        raise RxVisionError(f"augmentation_strength must be >= 0, not {strength}")
    out = dict(augmentation)
    fields = AugmentationConfig.model_fields
    for name in _SCALED:
        if name not in out:
            continue
        value = float(out[name]) * strength
        for meta in fields[name].metadata:
            upper = getattr(meta, "le", None)
            if upper is None and getattr(meta, "lt", None) is not None:
                upper = float(meta.lt) * (1 - 1e-6)
            if upper is not None:
                value = min(value, float(upper))
        out[name] = value
    if "scale_min" in out:
        out["scale_min"] = min(1.0, max(1e-3, 1.0 - (1.0 - float(out["scale_min"])) * strength))
    return out


def apply_params(base: RxVisionConfig, params: dict[str, Any]) -> RxVisionConfig:
    """The base config with a trial's parameters set; validated like any user config."""
    data = copy.deepcopy(base.model_dump(mode="json"))
    for key, value in params.items():
        if key == AUGMENTATION_STRENGTH:
            data["data"]["augmentation"] = scale_augmentation(data["data"]["augmentation"], value)
            continue
        *sections, leaf = key.split(".")
        node = data
        for part in sections:
            node = node[part]
        node[leaf] = value
    try:
        return config_from_dict(data)
    except RxVisionError as err:
        raise RxVisionError(f"parameters {params} give an {err.problem}", err.hint) from None


def parse_space(base: RxVisionConfig) -> list[Param]:
    """Resolve and check ``tuning.search_space`` (and ``tuning.enqueue``) against the schema:
    every bound and choice must be a valid value for its key, so a typo fails before the
    first trial instead of in the tenth."""
    space = base.tuning.search_space
    if not space:
        raise RxVisionError(
            "tuning.search_space is empty",
            "give at least one key to search (see configs/tuning.yaml)",
        )
    params = [resolve_param(key, spec) for key, spec in space.items()]
    for param in params:
        values = param.choices if param.kind == "categorical" else (param.low, param.high)
        for value in values:
            if param.kind == "int":
                value = int(value)
            try:
                apply_params(base, {param.name: value})
            except RxVisionError as err:
                raise RxVisionError(
                    f"search-space key '{param.name}': value {value!r} is not "
                    f"allowed ({err.problem})",
                    "fix its range or choices",
                ) from None
    names = {p.name for p in params}
    for entry in base.tuning.enqueue:
        unknown = sorted(set(entry) - names)
        if unknown:
            raise RxVisionError(
                f"tuning.enqueue names {unknown}, which the search space lacks",
                f"enqueue only searched keys: {', '.join(sorted(names))}",
            )
        apply_params(base, entry)
    _check_backbones(base, params)
    return params


def _check_backbones(base: RxVisionConfig, params: list[Param]) -> None:
    """Searched backbones must have pretrained weights here: offline, that means a local file
    or a weights package (a hub download fails in the middle of the study otherwise)."""
    from rxvision.models import hub_reachable, resolve_weights_source

    choices = next((p.choices for p in params if p.name == "model.backbone"), ())
    m = base.model
    if not choices or not m.pretrained:
        return
    need_hub = [
        b
        for b in choices
        if resolve_weights_source(str(b), m.pretrained, m.weights, m.weights_path) == "hub"
    ]
    if need_hub and not hub_reachable():
        raise RxVisionError(
            f"search-space backbones {need_hub} have no offline weights and the model hub "
            "cannot be reached",
            "search only backbones with a weights package (e.g. tf_efficientnet_lite0) or give "
            "model.weights=file with model.weights_path",
        )
