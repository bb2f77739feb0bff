"""End to end on the real local ZenML stack: train a tiny model -> log traffic with the
service's own logger (BentoML's monitor, in-process, not through `bentoml serve`) -> the
monitoring pipeline -> the report artifact exists and the metadata says what drifted."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory):
    """A production model version trained on tiny synthetic pills, and a config whose
    traffic log lives in a fresh folder."""
    from pipelines.training import run_training

    log_dir = tmp_path_factory.mktemp("traffic")
    cfg = tiny_config(f"serving.log_dir={log_dir}", "monitoring.min_rows=20")
    run_training(cfg)
    return cfg


def _production():
    from zenml.client import Client
    from zenml.enums import ModelStages

    from steps.common import MODEL_NAME

    return Client().get_model_version(MODEL_NAME, ModelStages.PRODUCTION)


def _log_shifted_traffic(cfg) -> int:
    """Darker, blurred versions of the dataset's pills, predicted by the production model and
    logged exactly as the service does."""
    from bentos.traffic import TrafficLogger, monitoring_options
    from rxvision.data.images import load_rgb
    from rxvision.data.sources import load_source
    from rxvision.monitoring import EmbeddingProjector
    from rxvision.monitoring.simulate import shift_image
    from rxvision.serving.predictor import Predictor
    from steps.common import EMBEDDING_PROJECTOR, MODEL_BUNDLE

    mv = _production()
    predictor = Predictor.from_bundle(mv.get_artifact(MODEL_BUNDLE).load(), runtime="torch")
    projector_json = mv.get_artifact(EMBEDDING_PROJECTOR).load()
    projector = EmbeddingProjector.from_json(projector_json) if projector_json else None
    logger = TrafficLogger(predictor.classes, model_version=str(mv.number), projector=projector,
                           monitor_options=monitoring_options(cfg.serving))
    rng = np.random.default_rng(0)
    samples = list(load_source(cfg.data).samples)
    images = [shift_image(load_rgb(s.path), "dark_blur", rng) for s in samples]
    logged = 0
    for start in range(0, len(images), 8):
        batch = images[start:start + 8]
        probs, emb = predictor.predict_arrays(predictor.preprocess(batch))
        logged += logger.log_prediction(batch, probs, file_sizes=[1000] * len(batch), embeddings=emb)
    assert logger.errors == 0
    return logged


def test_shifted_traffic_is_reported_with_artifact_and_metadata(trained):
    from zenml.client import Client

    from pipelines.monitoring import run_monitoring
    from steps.monitoring import DRIFT_REPORT, WHYLOGS_DRIFT

    assert _log_shifted_traffic(trained) >= 20
    run, result = run_monitoring(trained, "1h")
    assert result["outcome"] == "drift" and result["drifted"]
    assert "brightness" in result["drifted_columns"]

    check = run.steps["check_drift"]
    html = check.outputs[DRIFT_REPORT][0]
    assert "brightness" in html.load() and html.visualizations  # the dashboard can show it
    assert "brightness" in set(check.outputs[WHYLOGS_DRIFT][0].load()["column"])

    run_meta = Client().get_pipeline_run(run.id).run_metadata["drift"]
    assert run_meta["drifted"] is True and "brightness" in run_meta["drifted_columns"]
    mv_meta = Client().get_model_version(_production().model.name, _production().number).run_metadata
    assert mv_meta["drift"]["drifted"] is True
    # the report is an artifact of the production model version (Model Control Plane)
    assert _production().get_artifact(DRIFT_REPORT) is not None


def test_empty_window_is_not_enough_data_not_an_alarm(trained):
    from pipelines.monitoring import run_monitoring

    _, result = run_monitoring(trained, "1s", now=time.time() + 3600)
    assert result["outcome"] == "not_enough_data" and result["drifted"] is False
    assert result["reason"].startswith("not enough data: n=0 < min_rows=20")


def test_monitoring_an_unknown_model_version_is_a_user_error(trained):
    from pipelines.monitoring import run_monitoring
    from rxvision.errors import RxVisionError

    with pytest.raises(RxVisionError, match="no 9999 version"):
        run_monitoring(trained, "1h", model_version="9999")


def test_bad_window_is_a_user_error(trained):
    from pipelines.monitoring import run_monitoring
    from rxvision.errors import RxVisionError

    with pytest.raises(RxVisionError, match="bad monitoring window"):
        run_monitoring(trained, "yesterday")
