"""Models: heads, freezing, pretrained-weight providers and the bundle format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rxvision.config import ModelConfig
from rxvision.errors import RxVisionError
from rxvision.models import (
    build_model,
    load_bundle,
    normalization_values,
    package_weights_file,
    save_bundle,
)
from rxvision.models.weights import PACKAGE_WEIGHTS

TINY = {"backbone": "resnet10t", "pretrained": False}


def _imagenet_like_batch(size: int = 64) -> torch.Tensor:
    """Two real-ish pictures: a smooth gradient and a checkerboard (not noise)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    grad = torch.stack([xx, yy, 1 - xx])
    checker = ((torch.arange(size)[:, None] // 8 + torch.arange(size)[None, :] // 8) % 2).float()
    board = checker.expand(3, size, size)
    return (torch.stack([grad, board]) - 0.5) / 0.5


def test_linear_head_gives_logits_and_embeddings() -> None:
    model = build_model(ModelConfig(**TINY), num_classes=7)
    x = torch.randn(3, 3, 32, 32)
    assert model(x).shape == (3, 7)
    assert model.embed(x).shape == (3, model.backbone.num_features)


def test_attention_head_returns_maps_per_head_over_the_feature_grid() -> None:
    model = build_model(
        ModelConfig(**TINY, head="attention", attention_heads=4), num_classes=5
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    logits, maps = model.forward_with_attention(x)
    fmap = model.backbone.forward_features(x)
    assert logits.shape == (2, 5)
    assert maps.shape == (2, 4, fmap.shape[2], fmap.shape[3])
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 4))
    torch.testing.assert_close(model(x), logits)


@pytest.mark.parametrize("head", ["linear", "attention"])
def test_one_pass_logits_and_embedding_match_forward_and_embed(head: str) -> None:
    model = build_model(ModelConfig(**TINY, head=head, attention_heads=2), num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, embedding = model.forward_with_embedding(x)
    torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(embedding, model.embed(x))


def test_attention_head_projects_when_channels_do_not_divide_by_heads() -> None:
    model = build_model(
        ModelConfig(**TINY, head="attention", attention_heads=3), num_classes=4
    ).eval()
    _, maps = model.forward_with_attention(torch.randn(1, 3, 32, 32))
    assert maps.shape[1] == 3


def test_linear_head_refuses_attention_maps() -> None:
    model = build_model(ModelConfig(**TINY), num_classes=3)
    with pytest.raises(RxVisionError, match="attention head"):
        model.forward_with_attention(torch.randn(1, 3, 32, 32))


def test_frozen_backbone_gets_no_grads_and_does_not_change() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY, freeze_backbone=True), num_classes=3)
    model.train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.fc.weight.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(
            model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in model.backbone.parameters())
    for key, value in model.backbone.state_dict().items():  # weights AND BatchNorm statistics
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.head.fc.weight, head_before)


def test_unfreezing_lets_the_backbone_learn() -> None:
    model = build_model(ModelConfig(**TINY, freeze_backbone=True), num_classes=3).train()
    model.set_backbone_trainable(True)
    assert model.backbone.training
    torch.nn.functional.cross_entropy(
        model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])
    ).backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def _train_steps(model: torch.nn.Module, steps: int = 2) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(
            model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_stages_keep_their_weights_and_statistics_while_the_rest_learns() -> None:
    torch.manual_seed(0)
    # resnet10t: stem, layer1..layer4; freeze the stem and layer1
    model = build_model(ModelConfig(**TINY, freeze_stages=2), num_classes=3).train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    _train_steps(model)
    frozen = ("conv1.", "bn1.", "layer1.")
    for key, value in model.backbone.state_dict().items():
        changed = not torch.equal(value, before[key])
        if key.startswith(frozen):
            assert not changed, f"{key} of a frozen stage changed"
    later = [k for k in before if k.startswith("layer2.") and k.endswith("running_mean")]
    assert later and all(not torch.equal(model.backbone.state_dict()[k], before[k]) for k in later)
    assert model.backbone.layer2[0].conv1.weight.grad is not None
    assert model.backbone.layer1[0].conv1.weight.grad is None


def test_frozen_stages_stay_frozen_when_a_frozen_backbone_is_unfrozen() -> None:
    cfg = ModelConfig(**TINY, freeze_backbone=True, freeze_stages=1)
    model = build_model(cfg, num_classes=3).train()
    model.set_backbone_trainable(True)
    assert not model.backbone.conv1[0].weight.requires_grad
    assert not model.backbone.bn1.training
    assert model.backbone.layer1[0].conv1.weight.requires_grad
    assert model.backbone.layer1[0].bn1.training


def test_frozen_stages_are_counted_per_backbone_and_too_many_is_a_clear_error() -> None:
    with pytest.raises(RxVisionError, match=r"freeze_stages=5.*4 stages") as err:
        build_model(ModelConfig(**TINY, freeze_stages=5), num_classes=3)
    assert "from 0 to 4" in err.value.hint
    # the deepest stage can only be frozen with the whole backbone (model.freeze_backbone)
    model = build_model(ModelConfig(**TINY, freeze_stages=4), num_classes=3)
    assert any(p.requires_grad for p in model.backbone.layer4.parameters())
    assert not any(p.requires_grad for p in model.backbone.layer3.parameters())


def test_freezing_stages_of_a_backbone_that_names_none_is_a_clear_error() -> None:
    from rxvision.models.classifier import RxVisionClassifier

    class Unnamed(torch.nn.Module):  # a backbone without timm's group_matcher
        num_features = 8

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    model = RxVisionClassifier(Unnamed(), num_classes=2)
    with pytest.raises(RxVisionError, match="Unnamed does not name its stages") as err:
        model.freeze_stages(1)
    assert "freeze_stages=0" in err.value.hint
    assert all(p.requires_grad for p in model.parameters())  # nothing half-frozen


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(RxVisionError, match="unknown backbone 'resnet_does_not_exist'"):
        build_model(ModelConfig(backbone="resnet_does_not_exist", pretrained=False), 3)


def test_unavailable_pretrained_weights_fail_fast_listing_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub, as on the project's machines
    with pytest.raises(RxVisionError) as err:
        build_model(ModelConfig(backbone="resnet10t", pretrained=True, weights="auto"), 3)
    text = str(err.value)
    assert "cannot be reached" in text
    for option in (
        "model.weights=file",
        "model.weights=package",
        "model.weights=hub",
        "model.pretrained=false",
    ):
        assert option in text


def test_package_weights_for_a_backbone_without_a_package_are_refused() -> None:
    with pytest.raises(RxVisionError, match="no offline package has 'resnet10t'"):
        build_model(ModelConfig(backbone="resnet10t", weights="package"), 3)


def test_file_weights_without_a_path_are_refused() -> None:
    with pytest.raises(RxVisionError, match="weights_path is not set"):
        build_model(ModelConfig(backbone="resnet10t", weights="file"), 3)


def test_local_weights_file_loads_and_wrong_shapes_are_named(tmp_path: Path) -> None:
    donor = build_model(ModelConfig(**TINY), 3)
    good = tmp_path / "backbone.pt"
    torch.save({"state_dict": donor.backbone.state_dict()}, good)
    model = build_model(ModelConfig(backbone="resnet10t", weights="file", weights_path=good), 5)
    for key, value in donor.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)

    other = build_model(ModelConfig(backbone="resnet18", pretrained=False), 3)
    bad = tmp_path / "resnet18.pt"
    torch.save(
        other.state_dict(), bad
    )  # a whole classifier (backbone.* keys) of another architecture
    with pytest.raises(RxVisionError, match="does not fit backbone resnet10t: .*wrong shape"):
        build_model(ModelConfig(backbone="resnet10t", weights="file", weights_path=bad), 3)


@pytest.mark.skipif(
    package_weights_file("tf_efficientnet_lite0") is None, reason="weights package not installed"
)
def test_package_weights_load_into_lite0_and_behave_like_imagenet_weights() -> None:
    cfg = ModelConfig(backbone="tf_efficientnet_lite0", pretrained=True, weights="auto")
    assert normalization_values(cfg)["mean"] == PACKAGE_WEIGHTS["tf_efficientnet_lite0"].mean
    pretrained = build_model(cfg, 4).eval()
    assert pretrained.weights_source == "package"
    random = build_model(ModelConfig(backbone="tf_efficientnet_lite0", pretrained=False), 4).eval()
    bn = pretrained.backbone.bn1
    # trained BatchNorm statistics, not the (0, 1) of a fresh layer
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    with torch.no_grad():
        x = _imagenet_like_batch()
        feats = pretrained.embed(x)
        rand_feats = random.embed(x)
    assert feats.shape == (2, 1280) and torch.isfinite(feats).all()
    # the ReLU6 features of trained weights are sparse and differ between the two pictures
    assert (feats == 0).float().mean() > 0.2
    assert (feats[0] - feats[1]).abs().mean() > 0.05
    assert not torch.allclose(feats, rand_feats)


def test_bundle_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    cfg = ModelConfig(**TINY, head="attention", attention_heads=2)
    model = build_model(cfg, 3).eval()
    norm = {
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "image_size": 32,
        "interpolation": "bicubic",
        "crop_pct": 1.0,
    }
    info = save_bundle(
        tmp_path / "b", model, ["a", "b", "c"], norm, cfg, {"accuracy": 0.9}, "abc123"
    )
    loaded = load_bundle(tmp_path / "b")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    assert not loaded.model.training
    assert loaded.info.classes == ["a", "b", "c"] and loaded.info.sha256 == info.sha256
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["fingerprint"] == "abc123" and meta["metrics"] == {"accuracy": 0.9}
    assert meta["config"]["model"]["head"] == "attention"


def test_tampered_bundle_weights_fail_the_sha256_check(tmp_path: Path) -> None:
    model = build_model(ModelConfig(**TINY), 2)
    save_bundle(tmp_path, model, ["x", "y"], {"mean": [0.5] * 3}, ModelConfig(**TINY))
    weights = tmp_path / "weights.pt"
    state = torch.load(weights, weights_only=True)
    state["head.fc.bias"] += 1.0
    torch.save(state, weights)
    with pytest.raises(RxVisionError, match="sha256"):
        load_bundle(tmp_path)
    assert load_bundle(tmp_path, verify=False).model.num_classes == 2


def test_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RxVisionError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_unreachable_hub_fails_in_seconds_not_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(RxVisionError, match="cannot be reached"):
        build_model(ModelConfig(backbone="resnet10t", pretrained=True, weights="hub"), 3)


@pytest.mark.parametrize("backbone", ["mobilenetv3_small_050", "test_efficientnet", "test_vit"])
def test_linear_head_fits_the_pooled_width_of_each_family(backbone: str) -> None:
    model = build_model(ModelConfig(backbone=backbone, pretrained=False), num_classes=3).eval()
    size = 160 if "vit" in backbone else 64
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)
