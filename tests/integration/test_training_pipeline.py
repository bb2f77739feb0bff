"""The training pipeline on a real local ZenML stack (a temporary state folder of its own):
tiny synthetic pills, the real library (pretrained tf_efficientnet_lite0 at 64 px), real
MLflow and the ZenML Model Control Plane. Every assertion reads back what the run stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.support.production import production_version

pytestmark = pytest.mark.integration

# A first model that is clearly good (about 0.87 accuracy here) so that a worse one is worse.
GOOD = (
    "data.synthetic.images_per_class=20",
    "data.synthetic.image_size=64",
    "data.image_size=64",
    "training.epochs=3",
)
# the same data, but a model that cannot learn: one epoch at a learning rate of ~0
WORSE = (*GOOD, "training.epochs=1", "training.optimizer.lr=1e-9")


@pytest.fixture(scope="module")
def first_run(isolated_home, tiny_config):
    from pipelines.training import run_outputs, run_training

    cfg = tiny_config(*GOOD)
    run = run_training(cfg)
    return cfg, run, run_outputs(run)


def test_first_passing_model_becomes_production_with_metadata(first_run) -> None:
    cfg, run, out = first_run
    reg = out["registration"]
    assert reg["stage"] == "production"
    mv = production_version()
    assert str(mv.name) == reg["version"]
    meta = mv.run_metadata
    assert meta["dataset_fingerprint"] == out["fingerprint"]
    assert 0.0 <= meta["metrics"]["accuracy"] <= 1.0
    assert meta["metrics"]["macro_f1"] == pytest.approx(reg["metrics"]["macro_f1"])
    assert meta["config"]["training"]["epochs"] == cfg.training.epochs
    assert meta["gate"]["stage"] == "production"
    assert meta["lineage"]["pipeline_run"] == run.name


def test_model_version_links_bundle_evaluation_and_reference_artifacts(first_run) -> None:
    from rxvision.models.bundle import load_bundle

    _, _, out = first_run
    mv = production_version()
    bundle_dir = mv.get_artifact("model_bundle").load()
    loaded = load_bundle(Path(bundle_dir))  # sha256 verified
    assert loaded.info.fingerprint == out["fingerprint"]
    assert loaded.info.metrics["accuracy"] == pytest.approx(mv.run_metadata["metrics"]["accuracy"])
    evaluation = mv.get_artifact("evaluation").load()
    assert len(evaluation["correct"]) == evaluation["metrics"]["n_samples"]
    reference = mv.get_artifact("reference_features").load()
    assert {"brightness", "confidence", "predicted_class"} <= set(reference.columns)
    assert len(reference) > 0
    assert mv.get_artifact("reference_profile").load()  # serialized whylogs profile bytes
    # the calibration travels in the bundle; the trust tables are model-version metadata
    calibration = loaded.info.calibration_obj()
    assert calibration is not None and calibration.n_calibration > 0
    trust = mv.run_metadata["trust"]
    assert trust["calibration"]["version"] == calibration.version
    assert {r["transform"] for r in trust["invariance"]} == {
        "hflip",
        "rot90",
        "jpeg70",
        "brightness",
    }
    assert 0.0 <= evaluation["metrics"]["coverage"] <= 1.0


def test_reports_have_dashboard_visualizations(first_run) -> None:
    from zenml.client import Client

    _, run, _ = first_run
    steps = Client().get_pipeline_run(run.id).steps
    for step_name, artifact in (
        ("validate_data", "validation_report_html"),
        ("profile_data", "data_quality_report"),
        ("evaluate_model", "evaluation_report"),
        ("evaluate_model", "evaluation_plots"),
    ):
        version = steps[step_name].outputs[artifact][0]
        assert version.visualizations, f"{artifact} has no visualization"
    plots = steps["evaluate_model"].outputs["evaluation_plots"][0].load()
    assert plots["confusion_matrix"].startswith(b"\x89PNG")
    assert "<html" in steps["profile_data"].outputs["data_quality_report"][0].load().lower()


def test_mlflow_run_has_params_epoch_metrics_and_registry_alias(first_run) -> None:
    from mlflow.tracking import MlflowClient
    from zenml.client import Client

    from rxvision.names import MODEL_NAME

    cfg, _, out = first_run
    mlflow_info = out["registration"]["mlflow"]
    tracker = Client().active_stack.experiment_tracker
    client = MlflowClient(tracking_uri=tracker.get_tracking_uri())
    run = client.get_run(mlflow_info["run_id"])
    assert run.data.params["training.epochs"] == str(cfg.training.epochs)
    assert "git_commit" in run.data.tags
    assert run.data.metrics["macro_f1"] == pytest.approx(out["registration"]["metrics"]["macro_f1"])
    history = client.get_metric_history(run.info.run_id, "val_macro_f1")
    assert sorted(m.step for m in history) == list(range(1, cfg.training.epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "environment", "plots"} <= artifacts
    production = client.get_model_version_by_alias("rxvision-classifier", "production")
    assert str(production.version) == mlflow_info["version"]
    assert production.tags["zenml_model_version_name"] == out["registration"]["version"]
    zenml_version = Client().get_model_version(MODEL_NAME, out["registration"]["version"])
    assert production.tags["zenml_model_version_number"] == str(zenml_version.number)


def test_worse_model_is_rejected_with_fail_on_gate_and_production_stays(
    first_run, isolated_home, tiny_config
) -> None:
    import argparse

    from mlflow.tracking import MlflowClient
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    from pipelines.training import EXIT_GATE_REJECTED, PIPELINE_NAME, main, run_outputs

    _, _, first = first_run
    cfg = tiny_config(*WORSE, "gate.min_accuracy=0.6")  # the first model is well above this floor
    args = argparse.Namespace(zenml_options={}, fail_on_gate=True, state=isolated_home)
    assert main(cfg, args) == EXIT_GATE_REJECTED
    run = (
        Client()
        .list_pipeline_runs(pipeline_name=PIPELINE_NAME, sort_by="desc:created", size=1)
        .items[0]
    )
    out = run_outputs(run)
    assert out["registration"]["stage"] is None
    failed = {r["rule"] for r in out["gate"]["rules"] if r["passed"] is False}
    assert {"min_accuracy", "min_gain"} <= failed  # the rules it failed are named
    assert str(production_version().name) == first["registration"]["version"]
    steps = Client().get_pipeline_run(run.id).steps
    assert steps["split_data"].status == ExecutionStatus.CACHED  # same data, same data config
    assert steps["train_model"].status == ExecutionStatus.COMPLETED  # training is never cached
    tracker = Client().active_stack.experiment_tracker
    client = MlflowClient(tracking_uri=tracker.get_tracking_uri())
    alias = client.get_model_version_by_alias("rxvision-classifier", "production")
    assert str(alias.version) == first["registration"]["mlflow"]["version"]
    rejected = client.get_model_version(
        "rxvision-classifier", out["registration"]["mlflow"]["version"]
    )
    assert rejected.tags["rxvision.stage"] == "rejected"


def _corrupt_folder(cfg, tmp_path: Path) -> tuple[Path, list[str]]:
    """A small real ImageFolder (copies of the synthetic pills) plus a truncated JPEG and an
    empty file."""
    from rxvision.data.sources import load_source

    index = load_source(cfg.data)
    root = tmp_path / "pills"
    for label in index.classes:
        (root / label).mkdir(parents=True)
        for sample in [s for s in index.samples if s.label == label][:10]:
            shutil.copy(sample.path, root / label / sample.path.name)
    first, second = index.classes[:2]
    truncated = root / first / "truncated.jpg"
    Image.open(next((root / first).iterdir())).convert("RGB").save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / second / "empty.png").write_bytes(b"")
    return root, ["truncated.jpg", "empty.png"]


def test_corrupt_images_with_policy_fail_stop_the_run_naming_them(
    first_run, tiny_config, tmp_path
) -> None:
    from pipelines.training import run_training
    from rxvision.errors import RxVisionError

    root, bad = _corrupt_folder(first_run[0], tmp_path)
    cfg = tiny_config(
        *GOOD, "data.source=imagefolder", f"data.path={root}", "data.validation.policy=fail"
    )
    with pytest.raises(RxVisionError) as info:
        run_training(cfg)
    for name in bad:
        assert name in str(info.value)


def test_corrupt_images_with_policy_skip_are_listed_and_the_run_finishes(
    first_run, tiny_config, tmp_path
) -> None:
    from pipelines.training import run_outputs, run_training

    root, bad = _corrupt_folder(first_run[0], tmp_path)
    cfg = tiny_config(
        *GOOD,
        "training.epochs=1",
        "data.source=imagefolder",
        f"data.path={root}",
        "data.validation.policy=skip",
    )
    out = run_outputs(run_training(cfg))
    excluded = [Path(p).name for p in out["validation"]["excluded"]]
    assert sorted(excluded) == sorted(bad)
    assert out["registration"]["version"]  # trained and registered despite the bad files
