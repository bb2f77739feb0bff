"""Drift reaches people: on the real local stack, a drift decision posts exactly one alert
through the stack's ZenML alerter (the webhook flavor) to a local HTTP receiver, naming where
the drift report is; the decision is exported as a Prometheus gauge; `--retrain-on-drift`
starts the training pipeline, which registers a new model version."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# a model that clearly beats the majority class (the gate's floor), so it becomes production:
# with 3 updates per epoch, 2 epochs under the demo's one cosine over the run stay at chance
GOOD = (
    "data.synthetic.images_per_class=20",
    "data.synthetic.image_size=64",
    "data.image_size=64",
    "training.epochs=4",
)


@pytest.fixture()
def receiver():
    """A local webhook: records each POSTed JSON body."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()


@pytest.fixture(scope="module")
def trained(isolated_home, tiny_config, tmp_path_factory):
    from pipelines.training import run_training

    cfg = tiny_config(
        *GOOD, f"serving.log_dir={tmp_path_factory.mktemp('traffic')}", "monitoring.min_rows=20"
    )
    run_training(cfg)
    return cfg


def _log_dark_traffic(cfg) -> int:
    """The dataset's pills at a third of their brightness, predicted by the production model
    and logged the way the service logs them."""
    from rxvision.data.images import load_rgb
    from rxvision.data.sources import load_source
    from tests.support.production import log_production_traffic

    images = [(load_rgb(s.path) * 0.3).astype(np.uint8) for s in load_source(cfg.data).samples]
    return log_production_traffic(cfg, images)[0]


def test_drift_posts_one_alert_with_the_report_and_retrains(
    trained, isolated_home, receiver
) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from pipelines.monitoring import main
    from pipelines.training import PIPELINE_NAME as TRAINING

    url, bodies = receiver
    client = Client()
    alerter = client.active_stack_model.components[StackComponentType.ALERTER][0]
    assert alerter.flavor_name == "rxvision_webhook"
    client.update_stack_component(
        alerter.name, StackComponentType.ALERTER, configuration={"url": url}
    )
    # ZenML caches the active stack with its components' configuration per process (the shell's
    # `zenml alerter update` is another process and needs nothing): drop this process's copy
    from zenml.stack import stack as stack_module

    stack_module._STACK_CACHE.clear()
    Client._reset_instance()
    client = Client()
    assert client.active_stack.alerter.config.url == url
    assert _log_dark_traffic(trained) >= 20
    runs_before = client.list_pipeline_runs(pipeline_name=TRAINING, size=100).total
    versions_before = client.list_model_versions("rxvision-classifier", size=100).total

    args = argparse.Namespace(
        window="1h",
        fail_on_drift=False,
        retrain_on_drift=True,
        fail_on_gate=False,
        zenml_options={},
        model_version=None,
        state=isolated_home,
    )
    assert main(trained, args) == 0

    assert len(bodies) == 1, bodies
    alert = bodies[0]
    assert alert["event"] == "drift" and alert["source"] == "rxvision"
    assert Path(alert["report_uri"]).exists()
    assert alert["report_uri"] in alert["text"] and "brightness" in alert["drifted_columns"]
    report = client.get_artifact_version(alert["report_artifact_id"])
    assert "brightness" in report.load()  # the alert names the report that shows the drift

    gauge = (isolated_home.home / "metrics" / "rxvision_drift.prom").read_text()
    assert 'rxvision_drift_status{model_version="1"} 1.0' in gauge

    assert client.list_pipeline_runs(pipeline_name=TRAINING, size=100).total == runs_before + 1
    assert client.list_model_versions("rxvision-classifier", size=100).total == versions_before + 1
