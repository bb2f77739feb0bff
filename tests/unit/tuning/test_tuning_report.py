"""The best trial as a run config in ZenML's format: only what differs from the profile, under
``parameters.config`` with the profile, and loading it with --config's reader gives back
exactly the trial's config."""

from __future__ import annotations

import yaml

from rxvision.config import load_config
from rxvision.tuning import apply_params, best_config_yaml, best_run_config


def _without(cfg, *sections):
    data = cfg.model_dump(mode="json")
    for name in sections:
        data.pop(name)
    return data


def test_best_config_holds_the_tuned_keys_and_the_base_configs_own_changes() -> None:
    base = load_config("demo", None, ["training.epochs=5", "tuning.n_trials=3"])
    params = {"training.optimizer.lr": 0.0123, "data.image_size": 96}
    sections = best_run_config(base, params)
    assert sections == {
        "data": {"image_size": 96},
        "training": {"epochs": 5, "optimizer": {"lr": 0.0123}},
    }


def test_best_config_yaml_is_a_zenml_run_config_that_round_trips_through_read_run_config(
    tmp_path,
) -> None:
    from pipelines import read_run_config

    base = load_config("demo", None, ["data.synthetic.num_classes=3"])
    params = {"training.optimizer.lr": 0.004, "augmentation_strength": 0.5}
    outcome = {
        "study_name": "s",
        "metric": "val_macro_f1",
        "best": {"number": 7, "value": 0.91, "params": params},
    }
    text = best_config_yaml(base, outcome)
    assert text.startswith("# Best trial 7 of Optuna study 's' (val_macro_f1 0.9100")
    assert "python run.py --pipeline training --config" in text
    assert "zenml pipeline run pipelines.training.training_pipeline -c" in text
    path = tmp_path / "best.yaml"
    path.write_text(text)
    profile, sections, zenml_options = read_run_config(path)
    assert profile == "demo"
    loaded = load_config(profile, sections)
    expected = apply_params(base, params)
    assert _without(loaded, "tuning") == _without(expected, "tuning")
    document = yaml.safe_load(text)
    assert list(document) == ["parameters"]
    assert list(document["parameters"]) == ["config"]
    assert "tuning" not in document["parameters"]["config"]
    assert zenml_options == {}


def test_best_config_names_the_base_profile_so_training_uses_it_without_a_flag(tmp_path) -> None:
    from pipelines import read_run_config

    base = load_config("full", None, ["data.path=/tmp/pills"])
    text = best_config_yaml(
        base,
        {
            "study_name": "s",
            "metric": "m",
            "best": {"number": 1, "value": 0.5, "params": {"training.optimizer.lr": 0.002}},
        },
    )
    path = tmp_path / "best.yaml"
    path.write_text(text)
    profile, sections, _ = read_run_config(path)
    assert profile == "full"
    assert sections == {"data": {"path": "/tmp/pills"}, "training": {"optimizer": {"lr": 0.002}}}


def test_a_best_trial_equal_to_the_profile_writes_only_the_profile() -> None:
    base = load_config("demo")
    lr = base.training.optimizer.lr
    text = best_config_yaml(
        base,
        {
            "study_name": "s",
            "metric": "m",
            "best": {"number": 0, "value": 1.0, "params": {"training.optimizer.lr": lr}},
        },
    )
    assert yaml.safe_load(text) == {"parameters": {"config": {"profile": "demo"}}}
