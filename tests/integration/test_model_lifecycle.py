"""The model's life after training, the way ZenML and MLflow users handle it: promotion with
the gate's rules (and a recorded --force), the stage history as model-version metadata, the
MLflow alias following the stage, the registered MLflow model loading as a pyfunc, and the
plain `zenml` CLI (through `run.py --env`) seeing and running on the same state folder."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GOOD = (
    "data.synthetic.images_per_class=30",
    "data.synthetic.image_size=96",
    "data.image_size=96",
    "training.epochs=4",
)
# a model that learns less (one epoch at a fifth of the rate): above always answering the
# largest class (a gate floor), below GOOD
WORSE = (*GOOD, "training.epochs=1", "training.optimizer.lr=1e-3")


@pytest.fixture(scope="module")
def versions(isolated_home, tiny_config):
    """Version 1 (good, production) and version 2 (cannot learn: staging behind it)."""
    from pipelines.training import run_outputs, run_training

    first = run_outputs(run_training(tiny_config(*GOOD)))["registration"]
    second = run_outputs(run_training(tiny_config(*WORSE)))["registration"]
    assert (first["stage"], second["stage"]) == ("production", "staging")
    return first, second


def _mv(version: str):
    from zenml.client import Client

    return Client().get_model_version("rxvision-classifier", version)


def _mlflow():
    from mlflow.tracking import MlflowClient
    from zenml.client import Client

    return MlflowClient(tracking_uri=Client().active_stack.experiment_tracker.get_tracking_uri())


def test_promotion_follows_the_gate_and_force_is_recorded(versions, tiny_config) -> None:
    from pipelines.promotion import promote
    from rxvision.errors import RxVisionError

    first, second = versions
    cfg = tiny_config(*GOOD)
    with pytest.raises(RxVisionError, match=f"version {second['version']} cannot go to production"):
        promote(cfg, second["version"], "production")
    with pytest.raises(RxVisionError, match="--force needs --reason"):
        promote(cfg, second["version"], "production", force=True)
    out = promote(cfg, second["version"], "production", force=True, reason="rollback drill")
    assert out["forced"] and out["allowed"]

    new, old = _mv(second["version"]), _mv(first["version"])
    assert (str(new.stage), str(old.stage)) == ("production", "archived")
    history = new.run_metadata["stage_history"]
    assert [h["to"] for h in history] == ["staging", "production"]
    assert history[-1]["forced"] is True and history[-1]["reason"] == "rollback drill"
    assert (
        "min_gain" in history[-1]["failed_rules"]
        or "mcnemar_not_worse" in history[-1]["failed_rules"]
    )
    old_history = old.run_metadata["stage_history"]
    assert [h["to"] for h in old_history] == ["production", "archived"]
    assert old_history[-1]["replaced_by"] == second["version"]

    client = _mlflow()
    alias = client.get_model_version_by_alias("rxvision-classifier", "production")
    assert str(alias.version) == second["mlflow"]["version"]
    archived = client.get_model_version("rxvision-classifier", first["mlflow"]["version"])
    assert archived.tags["rxvision.stage"] == "archived" and "production" not in archived.aliases

    # the good model wins back production under the gate's rules (re-scored on its split)
    out = promote(cfg, first["version"], "production")
    assert out["allowed"] and not out["forced"]
    assert str(_mv(first["version"]).stage) == "production"
    assert (
        str(client.get_model_version_by_alias("rxvision-classifier", "production").version)
        == first["mlflow"]["version"]
    )
    # the model card linked to the version shows the change (a new artifact version)
    card = _mv(first["version"]).get_artifact("model_card").load()
    assert (
        f"version {first['version']}: production" in card and "archived &rarr; production" in card
    )


def test_registered_mlflow_model_loads_as_pyfunc_and_predicts(versions) -> None:
    import mlflow
    import pandas as pd
    from zenml.client import Client

    first, _ = versions
    mlflow.set_tracking_uri(Client().active_stack.experiment_tracker.get_tracking_uri())
    model = mlflow.pyfunc.load_model("models:/rxvision-classifier@production")
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == ["image"]
    assert model.metadata.saved_input_example_info is not None
    buf = io.BytesIO()
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(buf, format="PNG")
    out = model.predict(pd.DataFrame({"image": [buf.getvalue(), buf.getvalue()]}))
    classes = _mv(first["version"]).get_artifact("evaluation").load()["classes"]
    assert len(out) == 2 and set(out["label"]) <= set(classes)
    assert ((out["confidence"] > 0) & (out["confidence"] <= 1)).all()


def _with_env(command: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "BENTOML_", "MLFLOW_"))
    }
    env["RXVISION_HOME"] = str(home)
    env["COLUMNS"] = "250"  # rich tables: no truncated cells
    script = f'eval "$("{sys.executable}" run.py --env)" && {command}'
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_zenml_cli_through_run_py_env_sees_the_state_folder(versions, isolated_home) -> None:
    zenml = Path(sys.executable).with_name("zenml")
    proc = _with_env(f"{zenml} model list && {zenml} model version list", isolated_home.home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rxvision-classifier" in proc.stdout
    assert "production" in proc.stdout.lower()


def test_zenml_pipeline_run_accepts_the_run_config_and_resolves_the_stage(
    versions, isolated_home, tmp_path
) -> None:
    from zenml.client import Client

    from pipelines.monitoring import PIPELINE_NAME

    (tmp_path / "no-traffic").mkdir()
    config = tmp_path / "monitoring.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        parameters:
          config:
            profile: demo
            monitoring: {{min_rows: 5}}
          window: 1h
          log_dir: {tmp_path / "no-traffic"}
        """)
    )
    zenml = Path(sys.executable).with_name("zenml")
    proc = _with_env(
        f"{zenml} pipeline run pipelines.monitoring.monitoring_pipeline -c {config}",
        isolated_home.home,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run = (
        Client()
        .list_pipeline_runs(pipeline_name=PIPELINE_NAME, sort_by="desc:created", size=1)
        .items[0]
    )
    production = _mv("production")
    assert run.model_version.id == production.id
    result = (
        Client().get_pipeline_run(run.id).steps["check_drift"].outputs["drift_result"][0].load()
    )
    assert result["outcome"] == "not_enough_data"


def test_each_version_has_a_script_free_model_card_in_the_dashboard(versions) -> None:
    from zenml.client import Client

    from pipelines.training import PIPELINE_NAME

    _, second = versions
    run = (
        Client()
        .list_pipeline_runs(pipeline_name=PIPELINE_NAME, sort_by="desc:created", size=1)
        .items[0]
    )
    card = Client().get_pipeline_run(run.id).steps["register_model"].outputs["model_card"][0]
    assert card.visualizations  # shown as HTML in the dashboard
    page = card.load()
    assert f"version {second['version']}: staging" in page and "<script" not in page.lower()
    assert "Stage history" in page and "Lineage" in page
