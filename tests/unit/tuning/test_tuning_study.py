"""The study on a real Optuna SQLite storage with a small stand-in for training (a fake fit
that calls the hooks like the engine does): pruning, resume, failures, the test split, the
storage URL and the plots."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from rxvision.config import load_config
from rxvision.data.sources import Sample
from rxvision.data.split import DatasetSplits
from rxvision.errors import RxVisionError
from rxvision.tuning import PruningHook, masked, open_study, run_study, storage_url, study_plots

LR = "training.optimizer.lr"


@dataclass
class _Result:
    history: list[dict[str, float]]


class FakeFit:
    """Three epochs whose val_macro_f1 peaks at lr 1e-3; lr >= 0.5 'diverges'."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, cfg, splits, run_dir: Path, hooks=()):
        lr = cfg.training.optimizer.lr
        self.calls.append(
            {
                "lr": lr,
                "test": len(splits.test),
                "train": len(splits.train),
                "val": len(splits.val),
                "run_dir": run_dir,
            }
        )
        if lr >= 0.5:
            raise RxVisionError("training diverged: the loss is nan at epoch 1, step 2 of 3")
        quality = max(0.0, 1.0 - abs(math.log10(lr) + 3.0) / 3.0)
        history = []
        for epoch in (1, 2, 3):
            row = {"epoch": epoch, "val_macro_f1": quality * epoch / 3, "val_loss": 1 - quality}
            history.append(row)
            for hook in hooks:
                hook.on_epoch_end(epoch, dict(row))
        return _Result(history)


def _splits() -> DatasetSplits:
    def samples(split: str, n: int) -> list[Sample]:
        return [Sample(Path(f"/nowhere/{split}{i}.png"), "ab"[i % 2], split) for i in range(n)]

    return DatasetSplits(samples("train", 8), samples("val", 4), samples("test", 4), ["a", "b"])


def _cfg(**tuning):
    base = {
        "study_name": "unit",
        "n_trials": 3,
        "timeout_s": None,
        "search_space": {LR: {"low": 1e-5, "high": 1e-1, "log": True}},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    }
    return load_config("demo", {"tuning": {**base, **tuning}})


@pytest.fixture()
def url(tmp_path) -> str:
    return storage_url(_cfg().tuning, tmp_path)


def test_a_trial_worse_than_the_median_is_pruned_at_that_epoch(url, tmp_path) -> None:
    fit = FakeFit()
    cfg = _cfg(n_trials=2, enqueue=[{LR: 1e-3}, {LR: 1e-5}])
    outcome = run_study(cfg, _splits(), tmp_path / "runs", url, fit=fit)
    states = {t["number"]: (t["state"], t["epochs"]) for t in outcome.trials}
    assert states == {0: ("complete", 3), 1: ("pruned", 1)}
    assert outcome.best["number"] == 0 and outcome.best["value"] == pytest.approx(1.0)
    assert not (tmp_path / "runs" / "unit" / "trial-0001").exists()  # scratch is deleted


def test_trials_train_on_train_and_val_only(url, tmp_path) -> None:
    fit = FakeFit()
    run_study(_cfg(n_trials=2, pruner={"name": "none"}), _splits(), tmp_path, url, fit=fit)
    assert [(c["train"], c["val"], c["test"]) for c in fit.calls] == [(8, 4, 0), (8, 4, 0)]


def test_same_study_name_continues_the_study_in_the_database(url, tmp_path) -> None:
    fit = FakeFit()
    cfg = _cfg(n_trials=2, enqueue=[{LR: 1e-3}])
    first = run_study(cfg, _splits(), tmp_path, url, fit=fit)
    second = run_study(cfg, _splits(), tmp_path, url, fit=fit)
    assert first.new_trials == [0, 1] and second.new_trials == [2, 3]
    assert len(optuna.load_study(study_name="unit", storage=url).trials) == 4
    lrs = [c["lr"] for c in fit.calls]
    assert lrs.count(1e-3) == 1  # the enqueued set ran once per study
    assert len(set(lrs)) == 4  # a resumed sampler does not redraw the first run's trials


def test_a_diverging_trial_fails_with_its_message_and_the_study_goes_on(url, tmp_path) -> None:
    cfg = _cfg(
        n_trials=2,
        search_space={LR: {"low": 1e-5, "high": 0.9, "log": True}},
        enqueue=[{LR: 0.8}, {LR: 1e-3}],
        pruner={"name": "none"},
    )
    outcome = run_study(cfg, _splits(), tmp_path, url, fit=FakeFit())
    failed, done = outcome.trials
    assert failed["state"] == "fail" and failed["error"].startswith("training diverged")
    assert done["state"] == "complete" and outcome.best["number"] == 1


def test_a_study_without_a_completed_trial_is_a_user_error(url, tmp_path) -> None:
    cfg = _cfg(n_trials=1, search_space={LR: {"low": 0.6, "high": 0.9}})
    with pytest.raises(RxVisionError) as err:
        run_study(cfg, _splits(), tmp_path, url, fit=FakeFit())
    assert err.value.problem.startswith(
        "no trial of study 'unit' completed; the first error: training diverged"
    )


def test_a_metric_missing_from_the_history_stops_the_study_at_once(url, tmp_path) -> None:
    fit = FakeFit()
    with pytest.raises(RxVisionError, match="tuning.metric 'val_f1' is not in the training"):
        run_study(_cfg(metric="val_f1"), _splits(), tmp_path, url, fit=fit)
    assert len(fit.calls) == 1


def test_resuming_with_the_other_direction_is_a_user_error(url) -> None:
    open_study(_cfg().tuning, url)
    with pytest.raises(RxVisionError, match="was created to maximize"):
        open_study(_cfg(direction="minimize").tuning, url)


def test_pruning_hook_reports_through_storage_after_pickling(url, tmp_path) -> None:
    """With training.devices > 1 the hook travels to a DDP process and works from there."""
    study = open_study(_cfg().tuning, url)
    trial = study.ask()
    hook = pickle.loads(pickle.dumps(PruningHook(trial, "val_macro_f1", tmp_path, url)))
    assert hook.trial is None
    hook.on_epoch_end(1, {"val_macro_f1": 0.25})
    stored = optuna.load_study(study_name="unit", storage=url).trials[trial.number]
    assert stored.intermediate_values == {1: 0.25}


def test_storage_defaults_to_sqlite_in_the_state_folder_and_expands_variables(
    tmp_path, monkeypatch
) -> None:
    assert storage_url(_cfg().tuning, tmp_path) == f"sqlite:///{tmp_path.resolve()}/optuna.db"
    monkeypatch.setenv("OPTUNA_DB_PASSWORD", "s3cret")
    shared = _cfg(storage="postgresql://optuna:${OPTUNA_DB_PASSWORD}@db:5432/optuna").tuning
    url = storage_url(shared, tmp_path)
    assert url == "postgresql://optuna:s3cret@db:5432/optuna"
    assert "s3cret" not in masked(url) and "db:5432/optuna" in masked(url)
    monkeypatch.delenv("OPTUNA_DB_PASSWORD")
    with pytest.raises(RxVisionError, match="names an unset variable"):
        storage_url(shared, tmp_path)


def test_an_unusable_storage_url_is_a_user_error(tmp_path) -> None:
    with pytest.raises(RxVisionError, match="cannot open the tuning database"):
        open_study(_cfg().tuning, "nosuchdb://host/x")


def test_plots_are_plotly_pages_and_say_why_when_not_available(url, tmp_path) -> None:
    study = open_study(_cfg().tuning, url)
    early = study_plots(study)  # no trial yet
    assert "not available" in early["param_importances"]
    run_study(_cfg(n_trials=3, pruner={"name": "none"}), _splits(), tmp_path, url, fit=FakeFit())
    plots = study_plots(open_study(_cfg().tuning, url))
    assert set(plots) == {"optimization_history", "param_importances", "parallel_coordinates"}
    for page in plots.values():
        assert page.startswith("<html>") and "plotly" in page and "unit:" in page


KILLED_RUN = """
import os, sys
import rxvision.tuning.study as s
from rxvision.config import load_config
s.HEARTBEAT_S, s.GRACE_S = 1, 2
cfg = load_config("demo", {"tuning": {"study_name": "unit"}})
study = s.open_study(cfg.tuning, sys.argv[1])
study.optimize(lambda t: (t.suggest_float(sys.argv[2], 1e-5, 1e-1, log=True), os._exit(3)))
"""


@pytest.mark.slow
def test_a_trial_of_a_killed_run_is_retried_by_the_next_run(url, tmp_path, monkeypatch) -> None:
    import subprocess
    import sys
    import time

    import rxvision.tuning.study as study_module

    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, url, LR], check=False)
    assert killed.returncode == 3  # died inside its first trial, which stays "running"
    monkeypatch.setattr(study_module, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_module, "GRACE_S", 2)
    time.sleep(3)  # the dead trial's last heartbeat is now older than the grace period
    fit = FakeFit()
    outcome = run_study(_cfg(n_trials=1), _splits(), tmp_path, url, fit=fit)
    dead, retried = outcome.trials
    assert dead["state"] == "fail" and retried["state"] == "complete"
    assert retried["params"] == dead["params"] and fit.calls[0]["lr"] == dead["params"][LR]


def test_an_enqueued_set_whose_only_trial_failed_is_queued_again(url, tmp_path) -> None:
    study = open_study(_cfg().tuning, url)
    study.enqueue_trial({LR: 1e-3})
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # e.g. the run was interrupted
    fit = FakeFit()
    outcome = run_study(_cfg(n_trials=1, enqueue=[{LR: 1e-3}]), _splits(), tmp_path, url, fit=fit)
    assert [c["lr"] for c in fit.calls] == [1e-3]
    assert outcome.new_trials == [1] and outcome.trials[1]["state"] == "complete"


def test_a_trial_is_scored_by_the_weights_its_config_delivers() -> None:
    from rxvision.tuning.study import best_value

    history = [{"val_macro_f1": v} for v in (0.5, 0.9, 0.7)]
    assert best_value(history, "val_macro_f1", "maximize") == 0.9  # checkpoint.select best
    assert best_value(history, "val_macro_f1", "maximize", select="last") == 0.7
    assert best_value(history, "val_macro_f1", "minimize") == 0.5
