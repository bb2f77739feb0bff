"""The one config schema: profiles, YAML files, dotted overrides and the errors users see."""

from pathlib import Path

import pytest
import yaml

from rxvision.config import PROFILES, RxVisionConfig, load_config, parse_override
from rxvision.errors import RxVisionError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_profile_validates(profile):
    cfg = load_config(profile)
    assert isinstance(cfg, RxVisionConfig)
    assert cfg.profile == profile


def test_demo_is_offline_cpu_and_full_is_resnet50_gpu_as_the_seeds_configure_it():
    demo = load_config("demo")
    assert demo.data.source == "synthetic"
    assert demo.model.backbone == "tf_efficientnet_lite0" and demo.model.pretrained
    assert demo.training.accelerator in ("auto", "cpu")

    full = load_config("full")
    assert (full.model.backbone, full.data.image_size) == ("resnet50", 224)
    t = full.training
    assert (t.optimizer.lr, t.optimizer.weight_decay) == (1e-4, 1e-5)
    assert (t.scheduler.T_0, t.scheduler.T_mult, t.scheduler.eta_min) == (10, 2, 1e-6)
    assert (t.label_smoothing, t.class_weights, t.mixup_alpha) == (0.1, "balanced", 0.2)
    assert (t.grad_clip_norm, t.early_stopping.patience, t.precision) == (1.0, 10, "16")
    assert t.accelerator == "cuda"


def test_dotted_overrides_are_typed_and_applied():
    cfg = load_config(
        "demo",
        overrides=[
            "training.epochs=3",
            "training.optimizer.lr=0.01",
            "data.validation.policy=skip",
            "training.grad_clip_norm=null",
        ],
    )
    assert cfg.training.epochs == 3
    assert cfg.training.optimizer.lr == 0.01
    assert cfg.data.validation.policy == "skip"
    assert cfg.training.grad_clip_norm is None


def test_user_yaml_is_merged_over_the_profile(tmp_path: Path):
    user = tmp_path / "mine.yaml"
    user.write_text(
        yaml.safe_dump({"training": {"epochs": 2}, "data": {"synthetic": {"num_classes": 4}}})
    )
    cfg = load_config("demo", config_file=user)
    assert cfg.training.epochs == 2
    assert cfg.data.synthetic.num_classes == 4
    # untouched keys keep the profile's values
    assert cfg.data.image_size == load_config("demo").data.image_size


def test_unknown_key_names_the_key_and_the_known_ones():
    with pytest.raises(RxVisionError) as err:
        load_config("demo", overrides=["training.epoch=3"])
    msg = str(err.value)
    assert "unknown key 'training.epoch'" in msg
    assert "epochs" in msg


def test_bad_value_names_the_key_the_value_and_what_is_allowed():
    with pytest.raises(RxVisionError) as err:
        load_config("demo", overrides=["training.precision=8"])
    msg = str(err.value)
    assert "training.precision" in msg and "'8'" in msg and "'bf16'" in msg

    with pytest.raises(RxVisionError, match=r"training\.epochs.*-1.*>= 1"):
        load_config("demo", overrides=["training.epochs=-1"])


def test_unknown_key_in_a_yaml_file_is_an_error(tmp_path: Path):
    user = tmp_path / "typo.yaml"
    user.write_text("model:\n  backbone: resnet18\n  droput: 0.1\n")
    with pytest.raises(RxVisionError, match=r"unknown key 'model\.droput'"):
        load_config("demo", config_file=user)


def test_missing_or_malformed_config_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RxVisionError, match="config file not found"):
        load_config("demo", config_file=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(RxVisionError, match="not valid YAML"):
        load_config("demo", config_file=bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(RxVisionError, match="mapping"):
        load_config("demo", config_file=scalar)


def test_unknown_profile_lists_the_profiles():
    with pytest.raises(RxVisionError, match="demo, full"):
        load_config("huge")


@pytest.mark.parametrize("text", ["training.epochs", "=3", "training..epochs=3"])
def test_malformed_override_says_how_to_write_one(text):
    with pytest.raises(RxVisionError, match="key=value"):
        parse_override(text)


def test_folder_sources_need_a_path():
    with pytest.raises(RxVisionError, match="data.path is required"):
        load_config("demo", overrides=["data.source=imagefolder"])


def test_config_round_trips_through_yaml():
    cfg = load_config("demo", overrides=["training.epochs=4"])
    again = RxVisionConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_already_read_sections_merge_like_a_file():
    cfg = load_config("demo", config_file={"training": {"epochs": 2}})
    assert cfg.training.epochs == 2
    with pytest.raises(RxVisionError, match=r"unknown key 'training\.epoch'"):
        load_config("demo", config_file={"training": {"epoch": 2}})
