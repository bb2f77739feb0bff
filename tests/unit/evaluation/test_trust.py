"""Behavioural tests, OOD separation on real photos, the bundle evaluation that feeds the
drift reference, explanations and the gate's trust floors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rxvision.calibration import calibrate
from rxvision.calibration.fit import fit_calibration
from rxvision.config import GateConfig, load_config
from rxvision.data.images import load_rgb
from rxvision.data.sources import Sample
from rxvision.data.transforms import Normalization
from rxvision.errors import RxVisionError
from rxvision.evaluation.model_eval import (
    evaluate_bundle,
    evaluate_trained_bundle,
    predict_invariance,
    predict_samples,
    report_sections,
    resolve_device,
)
from rxvision.evaluation.plots import render_html_report
from rxvision.evaluation.trust import INVARIANCE_TRANSFORMS, invariance_rows
from rxvision.registry.gate import GateInput, decide
from tests.support.photos import skimage_photos

TINY = [
    "model.backbone=mobilenetv3_small_100",
    "model.pretrained=false",
    "data.image_size=32",
    "data.loader.num_workers=0",
    "data.loader.persistent_workers=false",
    "data.loader.pin_memory=false",
    "evaluation.bootstrap_samples=50",
    "monitoring.min_rows=5",
    "evaluation.device=cpu",
]


def _write(path: Path, rgb: np.ndarray) -> Sample:
    Image.fromarray(rgb).save(path)
    return Sample(path, path.stem.split("_")[0])


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> list[Sample]:
    """Images bright on the left (class 'left') or on the right (class 'right')."""
    root = tmp_path_factory.mktemp("halves")
    rng = np.random.default_rng(0)
    out = []
    for i in range(16):
        img = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
        side = "left" if i % 2 else "right"
        if side == "left":
            img[:, :16] += 180
        else:
            img[:, 16:] += 180
        out.append(_write(root / f"{side}_{i}.png", img))
    return out


class SideModel(nn.Module):
    """Says which half is brighter: a flip swaps its answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1] // 2
        left, right = x[..., :w].mean(dim=(1, 2, 3)), x[..., w:].mean(dim=(1, 2, 3))
        return torch.stack([left - right, right - left], dim=1) * 10


class FlipAveraged(nn.Module):
    """SideModel averaged over the image and its flip (and a bias): flip invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = SideModel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inner(x) + self.inner(torch.flip(x, dims=[3]))
        return z + torch.tensor([0.0, 1.0])


def _flip_invariance(model: nn.Module, samples: list[Sample]) -> float:
    cfg = load_config("demo", overrides=TINY)
    norm = Normalization(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    classes = ["left", "right"]
    base = predict_samples(model, samples, classes, norm, cfg, device="cpu").logits.argmax(1)
    flipped = predict_samples(
        model, samples, classes, norm, cfg, device="cpu", pre=INVARIANCE_TRANSFORMS["hflip"]
    ).logits.argmax(1)
    return invariance_rows(base, {"hflip": flipped})[0]["invariance"]


def test_flip_invariance_is_one_for_an_invariant_model_and_zero_for_a_side_detector(halves):
    assert _flip_invariance(FlipAveraged(), halves) == 1.0
    assert _flip_invariance(SideModel(), halves) == 0.0


def test_one_pass_invariance_gives_the_labels_of_one_pass_per_transform(halves):
    # 2 images per loader batch (10 // 4 views): the views must stay with their images
    cfg = load_config("demo", overrides=[*TINY, "data.loader.eval_batch_size=10"])
    norm = Normalization(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    classes, names = ["left", "right"], list(INVARIANCE_TRANSFORMS)
    model = SideModel()
    got = predict_invariance(model, halves, classes, norm, cfg, names, device="cpu")
    assert list(got) == names
    for name in names:
        one = predict_samples(
            model, halves, classes, norm, cfg, device="cpu", pre=INVARIANCE_TRANSFORMS[name]
        ).logits.argmax(1)
        np.testing.assert_array_equal(got[name], one, err_msg=name)
    flipped = got["hflip"]
    assert (flipped != np.array([classes.index(s.label) for s in halves])).all()
    assert predict_invariance(model, halves, classes, norm, cfg, [], device="cpu") == {}


def test_invariance_transforms_keep_the_image_shape_and_change_pixels():
    img = np.random.default_rng(1).integers(0, 200, (20, 30, 3), dtype=np.uint8)
    for name, fn in INVARIANCE_TRANSFORMS.items():
        out = fn(img)
        assert out.dtype == np.uint8 and out.ndim == 3, name
        assert not np.array_equal(out, img), name
    assert INVARIANCE_TRANSFORMS["rot90"](img).shape == (30, 20, 3)


@pytest.mark.slow
def test_energy_scores_separate_pills_from_real_photos(tmp_path):
    """A linear probe on pretrained features of synthetic pills, calibrated on held-out pills:
    scikit-image's real photos (people, animals, objects, textures) mostly come out unknown."""
    pytest.importorskip("skimage.data")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from rxvision.config import ModelConfig
    from rxvision.data.synthetic import generate_synthetic_pills
    from rxvision.data.transforms import preprocess_image
    from rxvision.models.build import build_model, normalization_for

    root = generate_synthetic_pills(
        tmp_path, num_classes=4, images_per_class=24, image_size=64, seed=0, workers=1
    )
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in (".png", ".jpg"))
    names = sorted({f.parent.name for f in files})
    labels = np.array([names.index(f.parent.name) for f in files])
    mc = ModelConfig()
    model, norm = build_model(mc, 4).eval(), normalization_for(mc, 64)

    def embed(images: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack([preprocess_image(i, norm) for i in images]))
        with torch.no_grad():
            return model.embed(x).numpy()

    photos = skimage_photos()
    x, ood = embed([load_rgb(f) for f in files]), embed(photos)
    order = np.random.default_rng(0).permutation(len(files))
    tr, va, te = order[:48], order[48:72], order[72:]
    probe = LogisticRegression(max_iter=2000).fit(x[tr], labels[tr])
    cal = fit_calibration(probe.decision_function(x[va]), labels[va], 0.9, 0.5, 0.05)
    pills = calibrate(probe.decision_function(x[te]), cal)
    other = calibrate(probe.decision_function(ood), cal)
    truth = np.r_[np.zeros(len(te)), np.ones(len(photos))]
    assert roc_auc_score(truth, np.r_[pills.ood_score, other.ood_score]) > 0.85
    assert other.unknown.mean() > 0.6 and pills.unknown.mean() < 0.2


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A random-weight bundle evaluated on tiny images (val = calibration, test scored)."""
    from rxvision.models.build import build_model
    from rxvision.models.bundle import save_bundle

    root = tmp_path_factory.mktemp("bundle-eval")
    rng = np.random.default_rng(0)
    samples = []
    for ci, c in enumerate(("a", "b", "c")):
        for i in range(9):
            img = np.full((28, 28, 3), 60 * ci, np.uint8) + rng.integers(
                0, 50, (28, 28, 3), dtype=np.uint8
            )
            samples.append(_write(root / f"{c}_{i}.png", img))
    val, test, train = samples[0::3], samples[1::3], samples[2::3]
    cfg = load_config("demo", overrides=TINY)
    save_bundle(
        root / "trained",
        build_model(cfg.model, 3, load_weights=False),
        ["a", "b", "c"],
        Normalization(image_size=32),
        cfg,
    )
    ev = evaluate_trained_bundle(root / "trained", val, test, cfg, root / "final")
    return ev, cfg, (val, test, train)


def test_bundle_evaluation_reports_coverage_invariance_and_seals_the_calibration(evaluated):
    from rxvision.models.bundle import read_bundle_info

    ev, cfg, (_val, test, _train) = evaluated
    m = ev.metrics
    for key in (
        "coverage",
        "coverage_ci_low",
        "mean_set_size",
        "uncertain_rate",
        "unknown_rate",
        "temperature",
        "invariance_hflip",
        "invariance_jpeg70",
        "worst_class_accuracy",
    ):
        assert key in m, key
    assert 1.0 <= m["mean_set_size"] <= 3.0
    info = read_bundle_info(ev.bundle_dir)
    assert info.calibration_obj() == ev.calibration
    assert info.metrics["coverage"] == m["coverage"]
    assert len(ev.gallery) <= cfg.evaluation.gallery_size
    html = render_html_report(ev.result, [], sections=report_sections(ev))
    assert "Prediction sets and abstention" in html and "Invariance" in html
    assert "Worst mistakes" in html
    # re-scoring the sealed bundle applies its calibration: the same calibrated ECE
    again = evaluate_bundle(ev.bundle_dir, test, cfg)
    assert again.metrics["ece"] == pytest.approx(m["ece"], abs=1e-6)


def test_drift_reference_reuses_the_evaluation_predictions(evaluated, monkeypatch):
    from rxvision.evaluation import model_eval
    from rxvision.monitoring.reference import reference_from_evaluation

    ev, cfg, (val, test, train) = evaluated

    def no_prediction(*args, **kwargs):
        raise AssertionError("the reference predicted images again")

    monkeypatch.setattr(model_eval, "predict_samples", no_prediction)
    ref = reference_from_evaluation(ev.heldout.to_bytes(), val, test, train, ev.bundle_dir, cfg)
    assert len(ref.table) == len(val) + len(test)
    assert ref.projector is not None and ref.profile_summary().shape[0] > 0
    with pytest.raises(RxVisionError, match="other images"):
        reference_from_evaluation(ev.heldout.to_bytes(), test, val, train, ev.bundle_dir, cfg)


def test_few_held_out_images_add_predicted_training_images(evaluated):
    from rxvision.monitoring.reference import reference_from_evaluation

    ev, cfg, (val, test, train) = evaluated
    cfg = cfg.model_copy(deep=True)
    cfg.monitoring.min_rows = 100
    ref = reference_from_evaluation(ev.heldout.to_bytes(), val, test, train, ev.bundle_dir, cfg)
    assert len(ref.table) == len(val) + len(test) + len(train)


def test_explain_returns_a_png_for_linear_and_attention_heads():
    from rxvision.config import ModelConfig
    from rxvision.evaluation.explain import class_activation_maps, explain
    from rxvision.models.build import build_model

    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    for head in ("linear", "attention"):
        model = build_model(
            ModelConfig(
                backbone="mobilenetv3_small_100", pretrained=False, head=head, attention_heads=2
            ),
            3,
            load_weights=False,
        )
        png = explain(model, img, Normalization(image_size=32), ["a", "b", "c"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        maps = class_activation_maps(model, torch.randn(2, 3, 32, 32))
        assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1


def test_cuda_device_without_a_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RxVisionError, match="no CUDA GPU"):
        resolve_device("cuda")


def _gate(metrics: dict[str, float], **cfg) -> list:
    base = {"accuracy": 0.95, "macro_f1": 0.95, "ece": 0.02}
    inp = GateInput({**base, **metrics}, np.ones(10, bool), "fp")
    gate = GateConfig(min_accuracy=0.9, min_macro_f1=0.9, max_ece=0.1, **cfg)
    return decide(inp, None, gate)


def test_gate_trust_floors_pass_and_fail_on_coverage_invariance_and_class_accuracy():
    good = {
        "coverage": 0.94,
        "coverage_target": 0.95,
        "invariance_hflip": 0.99,
        "worst_class_accuracy": 0.8,
    }
    cfg = {"coverage_tolerance": 0.02, "min_invariance": {"hflip": 0.98}, "min_class_accuracy": 0.7}
    ok = _gate(good, **cfg)
    assert ok.stage == "production"
    assert {r.rule for r in ok.rules} >= {
        "min_coverage",
        "min_invariance_hflip",
        "min_class_accuracy",
    }
    bad = _gate({**good, "coverage": 0.9, "invariance_hflip": 0.9}, **cfg)
    assert bad.stage is None
    assert {r.rule for r in bad.failed_rules} == {"min_coverage", "min_invariance_hflip"}
    assert _gate({}).stage == "production"  # the trust floors are off by default


def test_gate_trust_floor_on_a_missing_metric_names_it():
    with pytest.raises(RxVisionError, match="invariance_rot90"):
        _gate({}, min_invariance={"rot90": 0.9})


def test_stored_evaluation_with_trust_tables_reads_back(evaluated):
    """The evaluation artifact is to_dict() plus tables(): the gate must still read it."""
    from rxvision.evaluation import EvaluationResult

    ev, _cfg, _splits = evaluated
    stored = {**ev.result.to_dict(include_samples=True), **ev.tables()}
    again = EvaluationResult.from_dict(stored)
    assert again.calibration == ev.result.calibration
    assert stored["trust"]["calibration"]["version"] == ev.calibration.version


def test_flip_tta_averages_the_image_and_its_flip_and_keeps_the_plain_pass(halves):
    cfg = load_config("demo", overrides=TINY)
    norm = Normalization(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    classes = ["left", "right"]
    plain = predict_samples(SideModel(), halves, classes, norm, cfg, device="cpu")
    tta = predict_samples(SideModel(), halves, classes, norm, cfg, device="cpu", tta="flip")
    # the side detector's flip says the opposite: the average is zero
    assert np.abs(tta.logits).max() < 1e-5
    np.testing.assert_allclose(tta.plain_logits, plain.logits, atol=1e-6)
    assert np.abs(plain.logits).min() > 1.0
