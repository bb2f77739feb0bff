"""Behaviour of the per-image / per-prediction features shared by training and serving."""

from __future__ import annotations

import numpy as np
import pytest

from rxvision.errors import RxVisionError
from rxvision.monitoring import (
    EmbeddingProjector,
    embedding_columns,
    feature_columns,
    feature_table,
    image_features,
    prediction_features,
)
from tests.support.simulate import encoded_size, pill_image, shift_image, traffic


@pytest.fixture()
def pill() -> np.ndarray:
    return pill_image(np.random.default_rng(3), size=64)


def test_darker_image_has_lower_brightness_and_contrast(pill):
    dark = shift_image(pill, "dark", np.random.default_rng(0))
    a, b = image_features(pill), image_features(dark)
    assert b["brightness"] < 0.6 * a["brightness"]
    assert b["contrast"] < a["contrast"]


def test_blurred_image_has_lower_sharpness(pill):
    blurred = shift_image(pill, "blur", np.random.default_rng(0))
    assert image_features(blurred)["sharpness"] < image_features(pill)["sharpness"] - 1.0


def test_grey_image_has_no_saturation_or_colourfulness():
    grey = np.full((40, 50, 3), 128, dtype=np.uint8)
    feats = image_features(grey, file_size=1234)
    assert feats["saturation"] == pytest.approx(0.0)
    assert feats["colourfulness"] == pytest.approx(0.0)
    assert feats["sharpness"] == pytest.approx(0.0)
    assert (feats["width"], feats["height"], feats["aspect"]) == (50.0, 40.0, 1.25)
    assert feats["file_size"] == 1234.0


def test_colourful_image_scores_higher_than_a_pale_one():
    rng = np.random.default_rng(0)
    vivid = rng.choice([0, 255], size=(32, 32, 3)).astype(np.uint8)
    pale = (128 + (vivid.astype(int) - 128) // 8).astype(np.uint8)
    assert image_features(vivid)["colourfulness"] > 3 * image_features(pale)["colourfulness"]
    assert image_features(vivid)["saturation"] > image_features(pale)["saturation"]


def test_content_features_do_not_depend_on_upload_resolution(pill):
    big = np.kron(pill, np.ones((8, 8, 1), dtype=np.uint8))  # 512 px, same content
    a, b = image_features(pill), image_features(big)
    for name in ("brightness", "contrast", "saturation", "colourfulness"):
        assert b[name] == pytest.approx(a[name], rel=0.05), name
    assert b["width"] == 512.0


def test_grayscale_rgba_and_float_inputs_are_accepted(pill):
    ref = image_features(pill)
    rgba = np.concatenate([pill, np.full(pill.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert image_features(rgba)["brightness"] == pytest.approx(ref["brightness"])
    assert image_features(pill.astype(np.float32) / 255.0)["brightness"] == pytest.approx(
        ref["brightness"], abs=1e-2
    )
    assert image_features(pill[:, :, 0])["saturation"] == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 7)), np.zeros(5)])
def test_array_that_is_not_an_image_is_reported(bad):
    with pytest.raises(RxVisionError, match="RGB array"):
        image_features(bad)


def test_prediction_features_give_class_confidence_and_entropy():
    probs = np.array([[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]])
    rows = prediction_features(probs, ["a", "b", "c"])
    assert [r["predicted_class"] for r in rows] == ["a", "a", "c"]
    assert rows[0]["confidence"] == pytest.approx(0.9)
    assert rows[1]["entropy"] == pytest.approx(np.log(3))
    assert rows[2]["entropy"] == pytest.approx(0.0)
    assert rows[0]["entropy"] < rows[1]["entropy"]


def test_probabilities_that_do_not_match_the_classes_are_reported():
    with pytest.raises(RxVisionError, match="3 columns but there are 2 classes"):
        prediction_features(np.ones((1, 3)) / 3, ["a", "b"])


def test_feature_table_has_the_stable_schema():
    images = traffic(6, seed=1)
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=6)
    emb = np.random.default_rng(1).normal(size=(6, 16))
    proj = EmbeddingProjector.fit(emb, n_components=3)
    df = feature_table(images, [encoded_size(i) for i in images], probs, list("wxyz"), emb, proj)
    assert tuple(df.columns) == feature_columns(3)
    assert len(df) == 6 and not df.isna().any().any()
    assert df["predicted_class"].isin(list("wxyz")).all()


def test_feature_table_without_embeddings_keeps_the_embedding_columns_as_missing():
    df = feature_table(traffic(3, seed=2), n_components=2)
    assert tuple(df.columns) == feature_columns(2, with_predictions=False)
    assert df[list(embedding_columns(2))].isna().all().all()
    assert df["file_size"].isna().all()


def test_projector_survives_save_and_load(tmp_path):
    emb = np.random.default_rng(0).normal(size=(40, 8))
    proj = EmbeddingProjector.fit(emb, n_components=4)
    loaded = EmbeddingProjector.load(proj.save(tmp_path / "proj.npz"))
    np.testing.assert_allclose(loaded.transform(emb), proj.transform(emb), rtol=1e-6)
    again = EmbeddingProjector.from_json(proj.to_json())
    np.testing.assert_allclose(again.transform(emb), proj.transform(emb), rtol=1e-5, atol=1e-6)
    # the service reads the JSON file the deployment writes (projector.json)
    from_file = EmbeddingProjector.load(proj.save(tmp_path / "projector.json"))
    np.testing.assert_allclose(from_file.transform(emb), proj.transform(emb), rtol=1e-5, atol=1e-6)


def test_unreadable_projector_file_is_reported(tmp_path):
    bad = tmp_path / "projector.json"
    bad.write_text("{not json")
    with pytest.raises(RxVisionError, match="unreadable"):
        EmbeddingProjector.load(bad)


def test_projector_puts_a_new_kind_far_from_the_training_kinds():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, size=(4, 32))
    train = np.concatenate([c + rng.normal(0, 1, size=(50, 32)) for c in centres])
    proj = EmbeddingProjector.fit(train, n_components=4)
    new_kind = rng.normal(0, 5, size=32) + rng.normal(0, 1, size=(20, 32))
    # the new kind's projections are off the training clusters' centroids
    seen = proj.transform(train)
    dist_seen = np.linalg.norm(seen - seen.mean(0), axis=1).mean()
    unseen = proj.transform(new_kind)
    assert np.linalg.norm(unseen.mean(0) - proj.transform(centres).mean(0)) > 0.1 * dist_seen
    assert proj.n_components == 4 and proj.explained_variance_ratio.sum() > 0.5


def test_projector_with_wrong_embedding_size_is_reported():
    proj = EmbeddingProjector.fit(np.random.default_rng(0).normal(size=(10, 8)), 2)
    with pytest.raises(RxVisionError, match="fitted on 8"):
        proj.transform(np.zeros((1, 9)))


def test_missing_projector_file_is_reported(tmp_path):
    with pytest.raises(RxVisionError, match="not found"):
        EmbeddingProjector.load(tmp_path / "nope.npz")
