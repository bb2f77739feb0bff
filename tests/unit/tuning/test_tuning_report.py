"""The best trial as a run config: only what differs from the profile, and loading it with
--config's loader gives back exactly the trial's config."""

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
    assert sections == {"data": {"image_size": 96},
                        "training": {"epochs": 5, "optimizer": {"lr": 0.0123}}}


def test_best_config_yaml_round_trips_through_load_config(tmp_path) -> None:
    from run import split_config_file

    base = load_config("demo", None, ["data.synthetic.num_classes=3"])
    params = {"training.optimizer.lr": 0.004, "augmentation_strength": 0.5}
    outcome = {"study_name": "s", "metric": "val_macro_f1",
               "best": {"number": 7, "value": 0.91, "params": params}}
    text = best_config_yaml(base, outcome)
    assert text.startswith("# Best trial 7 of Optuna study 's' (val_macro_f1 0.9100")
    assert "--profile demo --config" in text
    path = tmp_path / "best.yaml"
    path.write_text(text)
    sections, zenml_options = split_config_file(path)
    loaded = load_config("demo", sections)
    expected = apply_params(base, params)
    assert _without(loaded, "tuning") == _without(expected, "tuning")
    assert "tuning" not in yaml.safe_load(text)
    assert zenml_options == {}


def test_a_best_trial_equal_to_the_profile_writes_an_empty_mapping() -> None:
    base = load_config("demo")
    lr = base.training.optimizer.lr
    text = best_config_yaml(base, {"study_name": "s", "metric": "m",
                                   "best": {"number": 0, "value": 1.0,
                                            "params": {"training.optimizer.lr": lr}}})
    assert yaml.safe_load(text) == {}
