"""Search-space parsing: kinds come from the schema, mistakes are one-line user errors that
name the key, and a trial's parameters become a validated config."""

from __future__ import annotations

import pytest

from rxvision.config import load_config
from rxvision.errors import RxVisionError
from rxvision.tuning import apply_params, parse_space, scale_augmentation


def _cfg(space: dict, **tuning) -> object:
    return load_config("demo", {"tuning": {"search_space": space, **tuning}})


def test_range_kinds_follow_the_schema_and_choices_are_categorical() -> None:
    params = parse_space(
        _cfg(
            {
                "training.optimizer.lr": {"low": "1e-4", "high": 1e-2, "log": True},
                "data.image_size": {"low": 96, "high": 160, "step": 32},
                "training.label_smoothing": {"low": 0, "high": 0.2},
                "model.head": {"choices": ["linear", "attention"]},
                "augmentation_strength": {"low": 0, "high": 1.5},
            }
        )
    )
    kinds = {p.name: p.kind for p in params}
    assert kinds == {
        "training.optimizer.lr": "float",
        "data.image_size": "int",
        "training.label_smoothing": "float",
        "model.head": "categorical",
        "augmentation_strength": "float",
    }
    lr = next(p for p in params if p.name == "training.optimizer.lr")
    assert (lr.low, lr.high, lr.log) == (1e-4, 1e-2, True)  # "1e-4" from YAML is a number


def test_the_default_search_space_parses() -> None:
    names = [p.name for p in parse_space(load_config("demo"))]
    assert "training.optimizer.lr" in names and "training.optimizer.weight_decay" in names


@pytest.mark.parametrize(
    ("space", "problem"),
    [
        (
            {"training.optimizer.lrr": {"low": 0.1, "high": 1}},
            "unknown search-space key 'training.optimizer.lrr'",
        ),
        ({"trainin.epochs": {"low": 1, "high": 3}}, "unknown search-space key 'trainin.epochs'"),
        (
            {"training.optimizer": {"low": 0.1, "high": 1}},
            "search-space key 'training.optimizer' names a section, not a value",
        ),
        (
            {"training.epochs.x": {"low": 1, "high": 3}},
            "unknown search-space key 'training.epochs.x'",
        ),
        (
            {"tuning.n_trials": {"low": 1, "high": 3}},
            "search-space key 'tuning.n_trials' cannot be tuned",
        ),
        (
            {"model.backbone": {"low": 1, "high": 3}},
            "search-space key 'model.backbone' is not a number, so it cannot have a range",
        ),
        (
            {"data.image_size": {"low": 96.5, "high": 160}},
            "search-space key 'data.image_size' is an integer setting, but its low is 96.5",
        ),
    ],
)
def test_bad_search_space_keys_are_user_errors_naming_the_key(space, problem) -> None:
    with pytest.raises(RxVisionError) as err:
        parse_space(_cfg(space))
    assert err.value.problem == problem
    assert err.value.hint


def test_a_bound_the_schema_refuses_is_caught_before_any_trial() -> None:
    # label_smoothing must be < 1
    with pytest.raises(RxVisionError) as err:
        parse_space(_cfg({"training.label_smoothing": {"low": 0.0, "high": 1.0}}))
    assert err.value.problem.startswith(
        "search-space key 'training.label_smoothing': value 1.0 is not allowed"
    )
    with pytest.raises(RxVisionError, match="value 'resnet' is not allowed"):
        parse_space(_cfg({"model.head": {"choices": ["linear", "resnet"]}}))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"low": 1.0, "high": 0.1}, "must be below high"),
        ({"low": 0.0, "high": 1.0, "log": True}, "a log range needs low > 0"),
        ({"low": 0.1}, "a range needs both low and high"),
        ({"choices": []}, "choices must not be empty"),
        ({"choices": [1, 2], "low": 0.1, "high": 1}, "either choices or low/high"),
    ],
)
def test_malformed_ranges_are_config_errors(spec, message) -> None:
    with pytest.raises(RxVisionError, match=message):
        _cfg({"training.optimizer.lr": spec})


def test_enqueued_parameters_must_be_searched_keys() -> None:
    with pytest.raises(RxVisionError, match=r"tuning.enqueue names \['training.epochs'\]"):
        parse_space(
            _cfg(
                {"training.optimizer.lr": {"low": 1e-4, "high": 1e-2}},
                enqueue=[{"training.epochs": 3}],
            )
        )


def test_an_empty_search_space_is_a_user_error() -> None:
    with pytest.raises(RxVisionError, match="tuning.search_space is empty"):
        parse_space(_cfg({}))


def test_apply_params_sets_nested_keys_and_validates() -> None:
    base = load_config("demo")
    cfg = apply_params(base, {"training.optimizer.lr": 0.02, "data.image_size": 96})
    assert cfg.training.optimizer.lr == 0.02 and cfg.data.image_size == 96
    assert base.training.optimizer.lr != 0.02  # the base config is not changed
    with pytest.raises(RxVisionError, match="invalid configuration"):
        apply_params(base, {"data.image_size": 8})


def test_augmentation_strength_scales_from_none_to_clipped_bounds() -> None:
    aug = load_config("demo").data.augmentation.model_dump()
    off = scale_augmentation(aug, 0.0)
    assert off["hflip"] == 0 and off["color_jitter"] == 0 and off["rotate_limit"] == 0
    assert off["scale_min"] == 1.0  # no random crop
    same = scale_augmentation(aug, 1.0)
    assert same == pytest.approx(aug)
    strong = scale_augmentation(aug, 3.0)
    assert strong["hflip"] == 1.0 and strong["rotate_limit"] == 180.0  # schema maxima
    assert strong["scale_min"] < aug["scale_min"]
    cfg = apply_params(load_config("demo"), {"augmentation_strength": 3.0})  # validates
    assert cfg.data.augmentation.hflip == 1.0


def test_the_example_tuning_config_parses_with_its_baseline_enqueued() -> None:
    from pathlib import Path

    from pipelines import read_run_config

    profile, sections, _ = read_run_config(Path(__file__).parents[3] / "configs" / "tuning.yaml")
    assert profile == "demo"
    cfg = load_config(profile, sections)
    names = {p.name for p in parse_space(cfg)}
    assert {"training.optimizer.lr", "augmentation_strength", "model.backbone"} <= names
    assert set(cfg.tuning.enqueue[0]) == names
