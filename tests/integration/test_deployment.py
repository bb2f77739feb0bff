"""The deployment pipeline on the real local stack: a tiny trained production model is
exported, stored in BentoML with lineage, built into a Bento and deployed by ZenML's BentoML
deployer; the deployed service answers over HTTP."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.production import production_version

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(isolated_home, tiny_config, tmp_path_factory):
    """A tiny production model in this module's own state folder."""
    from pipelines.training import run_training
    from tests.support.launch import free_port

    traffic = tmp_path_factory.mktemp("traffic")
    cfg = tiny_config(
        f"serving.port={free_port()}", f"serving.log_dir={traffic}", "export.parity_images=8"
    )
    run_training(cfg)
    return cfg


@pytest.fixture(scope="module")
def deployed(trained):
    from pipelines.deployment import run_deployment

    cfg = trained
    run, summary = run_deployment(cfg, containerize=True)
    yield cfg, run, summary
    from zenml.integrations.bentoml.model_deployers import BentoMLModelDeployer

    # not force: SIGTERM lets the daemon stop BentoML's worker processes too (SIGKILL orphans them)
    deployer = BentoMLModelDeployer.get_active_model_deployer()
    deployer.delete_model_server(summary["service_uuid"], timeout=120)


def test_deployed_service_answers_with_the_production_version(deployed) -> None:
    cfg, _run, summary = deployed
    url = summary["url"].rstrip("/")
    assert url.endswith(str(cfg.serving.port))
    assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 180, np.uint8)).save(buf, format="PNG")
    resp = httpx.post(
        f"{url}/classify", files={"image": ("p.png", buf.getvalue(), "image/png")}, timeout=60
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == str(production_version().number)
    assert (
        body["label"]
        in production_version()
        .get_artifact("model_bundle")
        .load()
        .joinpath("bundle.json")
        .read_text()
    )
    info = httpx.post(f"{url}/model_info", json={}, timeout=30).json()
    assert info["stage"] == "production"


def test_export_is_parity_checked_and_profiled_as_metadata(deployed) -> None:
    _cfg, run, summary = deployed
    export = summary["export"]
    assert export["passed"] and export["parity"]["onnx"]["top1_agreement"] == 1.0
    assert export["profile"] and export["int8_accuracy_change"] is not None
    profile = run.steps["export_model"].outputs["export_profile"][0].load()
    assert {"format", "batch_size", "p50_ms", "p99_ms", "throughput_ips"} <= set(profile.columns)
    meta = production_version().run_metadata
    assert "export" in meta and "latency_profile" in meta and "bentoml_model" in meta


def test_bentoml_model_carries_lineage_labels(deployed) -> None:
    import bentoml

    from rxvision.models import read_bundle_info

    _cfg, _run, summary = deployed
    labels = bentoml.models.get(summary["bentoml_model"]).info.labels
    bundle = read_bundle_info(production_version().get_artifact("model_bundle").load())
    assert labels["sha256"] == bundle.sha256
    assert labels["zenml_model"] == "rxvision-classifier"
    assert labels["zenml_model_version_number"] == str(production_version().number)
    assert labels["zenml_model_version_name"] == str(production_version().name)
    assert labels["classes"].split(",") == bundle.classes
    assert "mlflow_run_id" in labels and "metrics" in labels and "preprocessing" in labels


def test_containerize_says_why_when_docker_is_absent(deployed) -> None:
    from pathlib import Path

    from bentos.store import docker_status

    container = deployed[2]["container"]
    assert Path(container["dockerfile"]).is_file()
    ok, why = docker_status()
    if ok:
        assert container["image"]
    else:
        assert container["image"] is None and container["skipped"] == why


def test_batch_inference_writes_predictions_and_logs_traffic(trained, tmp_path) -> None:
    import pandas as pd

    from pipelines.batch_inference import run_batch_inference
    from rxvision.data.sources import load_source
    from rxvision.monitoring.traffic_log import read_traffic_log

    samples = list(load_source(trained.data).samples)[:6]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"{s.path},{s.label}\n" for s in samples) + "missing.png,x\n"
    )
    out = tmp_path / "pred.csv"
    _run, summary = run_batch_inference(trained, manifest, out)
    table = pd.read_csv(out)
    assert len(table) == 7 and table["predicted"].notna().sum() == 6
    assert table.loc[table["path"].str.endswith("missing.png"), "error"].item() == "unreadable"
    assert summary["predicted"] == 6 and summary["accuracy"] is not None
    assert summary["model_version"] == str(production_version().number)
    assert summary["logged_rows"] == 6 and summary["logging_errors"] == 0
    logged = read_traffic_log(trained.serving.log_dir)
    assert len(logged) >= 6


def test_deployed_service_starts_from_the_config_the_run_stored(deployed) -> None:
    import json
    from pathlib import Path

    import bentoml

    from bentos.store import SERVICE_CONFIG_FILE

    cfg, _run, summary = deployed
    stored = json.loads(
        (Path(bentoml.models.get(summary["bentoml_model"]).path) / SERVICE_CONFIG_FILE).read_text()
    )
    assert (
        stored["serving"]["port"] == cfg.serving.port and stored["serving"]["host"] == "127.0.0.1"
    )
    assert stored["monitoring"]["traffic_sample_rate"] == cfg.monitoring.traffic_sample_rate
    url = summary["url"].rstrip("/")
    assert "127.0.0.1" in url
    info = httpx.post(f"{url}/model_info", json={}, timeout=30).json()
    assert (
        info["serving"]["active"] == "primary"
        and info["traffic_sample_rate"] == cfg.monitoring.traffic_sample_rate
    )
