"""End to end on the real local ZenML stack: train a tiny model -> log traffic with the
service's own logger (BentoML's monitor, in-process, not through `bentoml serve`) -> the
monitoring pipeline -> the report artifact exists and the metadata says what drifted."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from tests.support.launch import free_port
from tests.support.production import production_version

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(isolated_home, tiny_config, tmp_path_factory):
    """A production model version trained on tiny synthetic pills (in this module's own
    state folder, so other modules' models cannot change it), and a config whose traffic
    log lives in a fresh folder."""
    from pipelines.training import run_training

    log_dir = tmp_path_factory.mktemp("traffic")
    cfg = tiny_config(f"serving.log_dir={log_dir}", "monitoring.min_rows=20")
    run_training(cfg)
    return cfg


def _log_shifted_traffic(cfg) -> int:
    """Darker, blurred versions of the dataset's pills, predicted by the production model and
    logged exactly as the service does."""
    from rxvision.data.images import load_rgb
    from rxvision.data.sources import load_source
    from tests.support.production import log_production_traffic
    from tests.support.simulate import shift_image

    rng = np.random.default_rng(0)
    samples = list(load_source(cfg.data).samples)
    images = [shift_image(load_rgb(s.path), "dark_blur", rng) for s in samples]
    logged, errors = log_production_traffic(cfg, images)
    assert errors == 0
    return logged


@pytest.fixture(scope="module")
def shifted(trained) -> int:
    """Rows of shifted traffic logged (once) into the tiny config's traffic folder."""
    return _log_shifted_traffic(trained)


def test_shifted_traffic_is_reported_with_artifact_and_metadata(trained, shifted):
    from zenml.client import Client

    from pipelines.monitoring import run_monitoring
    from steps.common import DRIFT_REPORT, WHYLOGS_DRIFT

    assert shifted >= 20
    run, result = run_monitoring(trained, "1h")
    assert result["outcome"] == "drift" and result["drifted"]
    assert "brightness" in result["drifted_columns"]

    check = run.steps["check_drift"]
    html = check.outputs[DRIFT_REPORT][0]
    assert "brightness" in html.load() and html.visualizations  # the dashboard can show it
    assert "brightness" in set(check.outputs[WHYLOGS_DRIFT][0].load()["column"])

    run_meta = Client().get_pipeline_run(run.id).run_metadata["drift"]
    assert run_meta["drifted"] is True and "brightness" in run_meta["drifted_columns"]
    mv_meta = (
        Client()
        .get_model_version(production_version().model.name, production_version().number)
        .run_metadata
    )
    assert mv_meta["drift"]["drifted"] is True
    # the report is an artifact of the production model version (Model Control Plane)
    assert production_version().get_artifact(DRIFT_REPORT) is not None


def test_fail_on_drift_exits_non_zero_and_prints_the_decision(trained, shifted, capsys):
    import argparse

    from pipelines.monitoring import EXIT_DRIFT, main

    args = argparse.Namespace(
        window="1h",
        fail_on_drift=True,
        retrain_on_drift=False,
        zenml_options=None,
        model_version=None,
    )
    assert main(trained, args) == EXIT_DRIFT
    out = capsys.readouterr().out
    assert "DRIFT DETECTED" in out and "brightness" in out
    args.fail_on_drift = False
    assert main(trained, args) == 0


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


@pytest.mark.serving
def test_served_traffic_reaches_the_monitoring_pipeline(trained, tmp_path):
    """serve -> send traffic -> monitoring pipeline: the rows the real `bentoml serve` logged
    are the ones the pipeline reads, and the shift is reported."""
    import io
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx
    from PIL import Image

    from bentos.store import save_bundle_to_bentoml
    from pipelines.monitoring import run_monitoring
    from rxvision.data.images import load_rgb
    from rxvision.data.sources import load_source
    from rxvision.monitoring import EmbeddingProjector
    from steps.common import EMBEDDING_PROJECTOR, MODEL_BUNDLE
    from tests.support.simulate import shift_image

    mv = production_version()
    projector_json = mv.get_artifact(EMBEDDING_PROJECTOR).load()
    projector_file = EmbeddingProjector.from_json(projector_json).save(tmp_path / "projector.json")
    bento_model = save_bundle_to_bentoml(
        mv.get_artifact(MODEL_BUNDLE).load(),
        projector_file=projector_file,
        labels={"zenml_model_version_number": mv.number},
    )
    log_dir = tmp_path / "served-traffic"
    port = free_port()
    env = {
        **os.environ,
        "RXVISION_MODEL_TAG": str(bento_model.tag),
        "RXVISION_OVERRIDES": f"serving.log_dir={log_dir}",
    }
    root = Path(__file__).resolve().parents[2]
    server_log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "bentos.service:RxVision",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    tail = lambda: (tmp_path / "serve.log").read_text()[-3000:]
    sent = 0
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"bentoml serve exited:\n{tail()}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"service not ready in time:\n{tail()}"
            time.sleep(1)
        rng = np.random.default_rng(1)
        for sample in list(load_source(trained.data).samples)[:30]:
            buf = io.BytesIO()
            Image.fromarray(shift_image(load_rgb(sample.path), "dark_blur", rng)).save(buf, "PNG")
            reply = httpx.post(
                f"{base}/classify",
                files={"image": ("x.png", buf.getvalue(), "image/png")},
                timeout=60,
            )
            assert reply.status_code == 200, f"{reply.text}\n{tail()}"
            sent += 1
    finally:
        # the group may be gone already (the assertion above then says why)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        server_log.close()

    cfg = trained.model_copy(deep=True)
    cfg.serving.log_dir = log_dir
    _, result = run_monitoring(cfg, "1h")
    assert result["n_current"] == sent
    assert result["drifted"] and "brightness" in result["drifted_columns"]
