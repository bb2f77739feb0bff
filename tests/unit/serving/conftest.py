"""A tiny trained model bundle, built once per session (no pipeline, no pretrained weights)."""

from pathlib import Path

import pytest

from tests.support.tiny import make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(
        tmp_path_factory.mktemp("tiny") / "bundle", image_size=32, num_classes=3, train_steps=30
    )


@pytest.fixture(scope="session")
def calibrated_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny import calibrate_tiny_bundle

    return calibrate_tiny_bundle(tiny_bundle, tmp_path_factory.mktemp("calibrated") / "bundle")
