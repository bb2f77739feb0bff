"""The tuning pipeline on a real local ZenML stack (a temporary state folder of its own): a
real Optuna study in SQLite under the state folder, real tiny training runs as trials.

The first run enqueues a sane learning rate and an absurd one (lr 1.0: the validation loss
after one epoch is about 7x the sane trial's), so the median pruner must stop the second
trial after its first epoch; a third trial is drawn by the sampler. A second run of the same
study adds a trial to it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STUDY = "it-study"
TUNING = {
    "study_name": STUDY,
    "n_trials": 3,
    "timeout_s": None,
    "metric": "val_loss",
    "direction": "minimize",
    "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    "search_space": {"training.optimizer.lr": {"low": 1.0e-4, "high": 1.0, "log": True}},
    "enqueue": [{"training.optimizer.lr": 0.01}, {"training.optimizer.lr": 1.0}],
}


def _args(home, best: Path) -> argparse.Namespace:
    return argparse.Namespace(state=home, zenml_options=None, best_config=best)


@pytest.fixture(scope="module")
def two_runs(isolated_home, tiny_config, tmp_path_factory):
    """Run the pipeline's main() twice on the same study: 3 trials, then 1 more."""
    from pipelines.tuning import main

    out = tmp_path_factory.mktemp("tuning-out")
    first_cfg = tiny_config(config_file={"tuning": TUNING})
    assert main(first_cfg, _args(isolated_home, out / "best-1.yaml")) == 0
    first = _last_run_outputs()
    second_cfg = tiny_config("tuning.n_trials=1", config_file={"tuning": TUNING})
    assert main(second_cfg, _args(isolated_home, out / "best-2.yaml")) == 0
    second = _last_run_outputs()
    return {"home": isolated_home, "out": out, "cfg": first_cfg, "first": first, "second": second}


def _last_run_outputs():
    from zenml.client import Client

    from pipelines.tuning import PIPELINE_NAME, run_outputs

    run = Client().get_pipeline(PIPELINE_NAME).last_run
    return {**run_outputs(run), "run": run}


def test_bad_trial_is_pruned_after_its_first_epoch(two_runs) -> None:
    trials = {t["number"]: t for t in two_runs["first"]["summary"]["trials"]}
    assert trials[0]["state"] == "complete" and trials[0]["epochs"] == 2
    assert trials[0]["params"] == {"training.optimizer.lr": 0.01}
    assert trials[1]["params"] == {"training.optimizer.lr": 1.0}
    assert trials[1]["state"] == "pruned" and trials[1]["epochs"] == 1
    assert trials[1]["last_reported"] > trials[0]["value"]
    assert len(trials) == 3
    assert two_runs["first"]["summary"]["best"]["number"] != 1


def test_study_is_persisted_in_sqlite_and_a_second_run_adds_to_it(two_runs) -> None:
    import optuna

    db = two_runs["home"].home / "optuna.db"
    assert db.is_file()
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    second = two_runs["second"]["summary"]
    assert second["new_trials"] == [3]
    assert len(second["trials"]) == 4
    # the enqueued parameter sets ran once per study, not again on the second run
    assert study.trials[3].params["training.optimizer.lr"] not in (0.01, 1.0)
    states = [t.state.name for t in study.trials]
    assert states[0] == "COMPLETE" and states[1] == "PRUNED"


def test_best_config_loads_with_config_flag_and_reproduces_the_best_trial(two_runs) -> None:
    from pipelines import read_run_config
    from rxvision.config import load_config
    from rxvision.tuning import apply_params

    summary = two_runs["second"]["summary"]
    path = two_runs["out"] / "best-2.yaml"
    assert path.read_text() == two_runs["second"]["best_config"]
    profile, sections, zenml_options = read_run_config(path)
    assert profile == "demo"
    loaded = load_config(profile, sections)
    expected = apply_params(two_runs["cfg"], summary["best"]["params"])
    got, want = loaded.model_dump(mode="json"), expected.model_dump(mode="json")
    for section in ("profile", "tuning"):
        got.pop(section), want.pop(section)
    assert got == want
    assert loaded.training.optimizer.lr == summary["best"]["params"]["training.optimizer.lr"]
    assert zenml_options == {}


def test_plots_are_dashboard_visualizations_and_html_files(two_runs) -> None:
    from zenml.client import Client

    from steps.common import TUNING_PLOTS

    run = Client().get_pipeline_run(two_runs["second"]["run"].id)
    outputs = run.steps["tune_hyperparameters"].outputs
    folder = two_runs["home"].home / "tuning" / STUDY
    for name in TUNING_PLOTS:
        assert outputs[name][0].visualizations, f"{name} has no visualization"
        page = (folder / f"{name}.html").read_text()
        assert "plotly" in page.lower() and STUDY in page
    meta = run.steps["tune_hyperparameters"].run_metadata
    assert meta["trials_in_study"] == 4 and meta["trials_this_run"] == 1


def test_unknown_search_space_key_is_a_user_error_before_the_pipeline_runs(
    two_runs, tiny_config
) -> None:
    from zenml.client import Client

    from pipelines.tuning import PIPELINE_NAME, run_tuning
    from rxvision.errors import RxVisionError

    runs_before = Client().list_pipeline_runs(pipeline=PIPELINE_NAME).total
    assert runs_before == 2  # the fixture's two runs
    cfg = tiny_config(
        config_file={
            "tuning": {
                **TUNING,
                "search_space": {"training.optimizer.lrr": {"low": 0.001, "high": 0.1}},
                "enqueue": [],
            }
        }
    )
    with pytest.raises(RxVisionError) as err:
        run_tuning(cfg)
    assert err.value.problem == "unknown search-space key 'training.optimizer.lrr'"
    assert "known keys under training.optimizer: backbone_lr_scale, lr" in err.value.hint
    assert Client().list_pipeline_runs(pipeline=PIPELINE_NAME).total == runs_before


@pytest.fixture()
def on_k8s_stack(isolated_home, monkeypatch):
    """The Kubernetes GPU stack (registered, no cluster needed) active for one test."""
    from zenml.client import Client

    from stacks.register import register_stack

    name = register_stack(ROOT / "stacks" / "k8s-gpu.yaml")
    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", str(Client().get_stack(name).id))
    return name


def test_a_remote_orchestrator_without_a_shared_study_database_is_a_user_error(
    on_k8s_stack, tiny_config
) -> None:
    from pipelines.tuning import check_storage
    from rxvision.errors import RxVisionError

    with pytest.raises(RxVisionError) as err:
        check_storage(tiny_config(config_file={"tuning": TUNING}))
    assert "default SQLite study would be lost" in err.value.problem
    assert "tuning.storage" in err.value.hint


def test_tuning_compiles_for_k8s_with_the_shared_database_and_its_secret(
    on_k8s_stack, tiny_config
) -> None:
    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.integrations.kubernetes.manifest_utils import build_pod_manifest
    from zenml.stack import Stack

    from pipelines import read_run_config
    from pipelines.tuning import check_storage, tuning_pipeline

    profile, sections, options = read_run_config(ROOT / "configs" / "tuning-k8s.yaml")
    assert profile == "full"
    cfg = tiny_config(config_file=sections)  # the file's sections on the tiny demo config
    check_storage(cfg)  # a shared URL is accepted
    assert cfg.tuning.storage.startswith("postgresql://optuna:${OPTUNA_DB_PASSWORD}@")
    stack = Stack.from_model(Client().get_stack(on_k8s_stack))
    pipe = tuning_pipeline.copy()
    pipe.prepare(config=cfg)
    snapshot = Compiler().compile(
        pipeline=pipe,
        stack=stack,
        run_configuration=PipelineRunConfiguration.model_validate(options),
    )
    tune = snapshot.step_configurations["tune_hyperparameters"]
    assert tune.config.settings["resources"].gpu_count == 1
    assert "psycopg2-binary" in snapshot.pipeline_configuration.settings["docker"].requirements
    pod = build_pod_manifest(
        pod_name="tune",
        image_name="rxvision:test",
        command=["python"],
        args=[],
        privileged=False,
        pod_settings=stack.orchestrator.get_settings(tune).pod_settings,
    ).to_dict()["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env_from = container["env_from"][0]
    assert (env_from.get("secret_ref") or env_from.get("secretRef"))["name"] == "optuna-db"


def test_zenml_pipeline_run_accepts_a_tuning_run_config(two_runs, tiny_config, tmp_path) -> None:
    """ZenML's own CLI runs the pipeline from a run config in the configs/ format: the
    RxVision sections (tiny ones here) under parameters.config, a ZenML option beside them."""
    import os
    import subprocess
    import sys

    import optuna
    import yaml

    tuning = {
        **TUNING,
        "study_name": "it-cli-study",
        "n_trials": 1,
        "enqueue": [{"training.optimizer.lr": 0.01}],
    }
    # the tiny config spelled out (every section; the profile is demo)
    sections = tiny_config(config_file={"tuning": tuning}).model_dump(mode="json")
    config = tmp_path / "tuning.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"config": sections}, "enable_cache": False}))
    home = two_runs["home"].home
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "BENTOML_", "MLFLOW_"))
    }
    env["RXVISION_HOME"] = str(home)
    zenml = Path(sys.executable).with_name("zenml")
    script = (
        f'eval "$("{sys.executable}" run.py --env)" && '
        f"{zenml} pipeline run pipelines.tuning.tuning_pipeline -c {config}"
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    study = optuna.load_study(study_name="it-cli-study", storage=f"sqlite:///{home / 'optuna.db'}")
    assert [t.params for t in study.trials] == [{"training.optimizer.lr": 0.01}]
    assert study.trials[0].state.name == "COMPLETE"
