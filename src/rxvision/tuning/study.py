"""The Optuna study: where it is stored, the objective (one rxvision.training.fit per trial,
scored on the validation split) and the pruning hook that stops a bad trial between epochs.

The study lives in an Optuna RDB storage (SQLite under the state folder by default, any
SQLAlchemy URL for a shared database), so running again with the same study name continues
it: earlier trials inform the sampler and count in the results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from rxvision.config import RxVisionConfig, TuningConfig
from rxvision.errors import RxVisionError
from rxvision.training import TrainingHook
from rxvision.tuning.space import Param, apply_params, parse_space

log = logging.getLogger(__name__)

PRUNED_MARKER = "pruned.json"
# a trial whose process died (killed run) is marked failed after this long without a
# heartbeat and retried once by the next run of the study
HEARTBEAT_S = 60
GRACE_S = 180


def storage_url(tuning: TuningConfig, home: Path) -> str:
    """The study's database: ``tuning.storage`` with ${VAR}s expanded, else SQLite at
    ``home/optuna.db``."""
    if tuning.storage:
        url = os.path.expandvars(tuning.storage)
        if "${" in url:
            raise RxVisionError(
                f"tuning.storage {tuning.storage!r} names an unset variable",
                "export it where the trials run (e.g. from a Kubernetes secret)",
            )
        return url
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'optuna.db').resolve()}"


def masked(url: str) -> str:
    """The URL without its password, for logs and summaries."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_study
        return url.split("@")[-1]


def open_study(tuning: TuningConfig, url: str) -> optuna.Study:
    """Create the study, or load it when one of that name exists (resume)."""
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
            )
    except Exception as exc:  # noqa: BLE001 - bad URL, missing driver, unreachable server
        raise RxVisionError(
            f"cannot open the tuning database {masked(url)}: {exc}",
            "check tuning.storage (an SQLAlchemy URL) and that its driver is installed",
        ) from None
    try:
        previous = len(optuna.load_study(study_name=tuning.study_name, storage=storage).trials)
    except KeyError:
        previous = 0
    # a fixed seed would redraw the first run's random trials on every resume
    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.TPESampler(seed=tuning.seed + previous, n_startup_trials=5)
        if tuning.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=tuning.seed + previous)
    )
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=tuning.pruner.n_startup_trials,
            n_warmup_steps=tuning.pruner.n_warmup_steps,
        )
        if tuning.pruner.name == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        study_name=tuning.study_name,
        sampler=sampler,
        pruner=pruner,
        direction=tuning.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != tuning.direction:
        raise RxVisionError(
            f"study '{tuning.study_name}' was created to {study.direction.name.lower()} its "
            f"metric, this config says {tuning.direction}",
            "use another tuning.study_name for a different objective",
        )
    return study


class Pruned(Exception):
    """Raised by PruningHook to stop fit(); the objective turns it into optuna.TrialPruned."""


class TrialFailed(Exception):
    """A trial that failed with an RxVisionError (say training diverged); the study goes on."""


class MetricMissing(RxVisionError):
    """tuning.metric is not in the history: a config error that stops the study."""


class PruningHook(TrainingHook):
    """Reports each epoch's metric to the trial and stops the run when the pruner says so.

    Picklable for ``training.devices > 1`` (fit sends hooks to the DDP processes): the trial
    is rebuilt there from the storage URL, study name and trial number. A marker file in the run
    folder tells the objective that the run stopped because it was pruned, also when the
    exception ended a spawned process.
    """

    def __init__(self, trial: optuna.Trial, metric: str, run_dir: Path, url: str) -> None:
        self.trial: optuna.Trial | None = trial
        self.metric = metric
        self.marker = Path(run_dir) / PRUNED_MARKER
        self._ref = (url, trial.study.study_name, trial.number, trial.study.pruner)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "trial": None}

    def _live_trial(self) -> optuna.Trial:
        if self.trial is None:
            url, name, number, pruner = self._ref
            storage = optuna.storages.RDBStorage(url)
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(name), number
            )
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
            self.trial = optuna.trial.Trial(study, trial_id)
        return self.trial

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise MetricMissing(
                f"tuning.metric '{self.metric}' is not in the training history",
                f"choose one of: {', '.join(sorted(metrics))}",
            )
        value = float(metrics[self.metric])
        trial = self._live_trial()
        trial.report(value, step=epoch)
        if trial.should_prune():
            self.marker.write_text(json.dumps({"epoch": epoch, "value": value}))
            raise Pruned(f"trial {trial.number} pruned after epoch {epoch}: {self.metric} {value}")


@dataclass
class StudyOutcome:
    """What a tuning run did: this run's trial numbers and the study as it stands."""

    study_name: str
    storage: str  # masked
    metric: str
    direction: str
    new_trials: list[int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial as plain data (for the summary, artifacts and metadata)."""
    steps = sorted(trial.intermediate_values)
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "epochs": steps[-1] if steps else 0,
        "last_reported": trial.intermediate_values[steps[-1]] if steps else None,
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "error": trial.user_attrs.get("error"),
    }


def best_value(
    history: list[dict[str, float]], metric: str, direction: str, select: str = "best"
) -> float:
    """The trial's score, of the weights the trial's config would deliver: the best epoch's
    value of the metric (the epoch a checkpoint monitor on that metric keeps), or with
    ``select="last"`` (training.checkpoint.select) the last epoch's."""
    values = [float(row[metric]) for row in history if metric in row]
    if not values:
        raise MetricMissing(
            f"tuning.metric '{metric}' is not in the training history",
            f"choose one of: {', '.join(sorted(history[0])) if history else '-'}",
        )
    if select == "last":
        return values[-1]
    return max(values) if direction == "maximize" else min(values)


def make_objective(
    base: RxVisionConfig,
    params: list[Param],
    splits: Any,
    runs_dir: Path,
    url: str,
    fit: Any = None,
) -> Any:
    """The objective: draw parameters, train with them on train/val (never test), score."""
    if fit is None:
        from rxvision.training import fit
    tuning = base.tuning
    # the trials never see the test split; it stays for the final training run's evaluation
    trial_splits = dataclasses.replace(splits, test=[])

    def objective(trial: optuna.Trial) -> float:
        values = {p.name: p.suggest(trial) for p in params}
        cfg = apply_params(base, values)
        run_dir = runs_dir / f"trial-{trial.number:04d}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a retried number must not resume
        run_dir.mkdir(parents=True)
        hook = PruningHook(trial, tuning.metric, run_dir, url)
        try:
            result = fit(cfg, trial_splits, run_dir, hooks=[hook])
            return best_value(
                result.history, tuning.metric, tuning.direction, cfg.training.checkpoint.select
            )
        except MetricMissing:
            raise
        except Exception as exc:
            if (run_dir / PRUNED_MARKER).is_file():
                raise optuna.TrialPruned(str(exc)) from None
            if isinstance(exc, RxVisionError):  # e.g. a diverging lr: a failed trial
                trial.set_user_attr("error", str(exc))
                raise TrialFailed(str(exc)) from None
            raise
        finally:
            if not tuning.keep_trial_runs:
                shutil.rmtree(run_dir, ignore_errors=True)

    return objective


def _progress(total: int) -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        callback.done += 1  # type: ignore[attr-defined]
        record = trial_record(trial)
        try:
            best = f"best so far: trial {study.best_trial.number}, {study.best_value:.4f}"
        except ValueError:
            best = "no completed trial yet"
        what = (
            f"{record['value']:.4f}"
            if record["state"] == "complete"
            else f"{record['state']} after epoch {record['epochs']}"
        )
        log.info(
            "tuning: trial %d/%d (study #%d) %s; %s",
            callback.done,
            total,  # type: ignore[attr-defined]
            trial.number,
            what,
            best,
        )

    callback.done = 0  # type: ignore[attr-defined]
    return callback


def _enqueue(study: optuna.Study, sets: list[dict[str, Any]]) -> None:
    """Queue each parameter set once per study: again only if every earlier trial with it
    failed (Optuna's skip_if_exists also counts failed trials, so an interrupted first run
    would never try its baseline)."""
    state = optuna.trial.TrialState
    for values in sets:

        def same(params: dict[str, Any], values: dict[str, Any] = values) -> bool:
            return all(params.get(key) == value for key, value in values.items())

        tried = study.get_trials(
            deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.RUNNING)
        )
        queued = study.get_trials(deepcopy=False, states=(state.WAITING,))
        if any(same(t.params) for t in tried) or any(
            same(t.system_attrs.get("fixed_params", {})) for t in queued
        ):
            continue
        study.enqueue_trial(values)


def run_study(
    base: RxVisionConfig, splits: Any, runs_dir: Path, url: str, fit: Any = None
) -> StudyOutcome:
    """Add up to ``tuning.n_trials`` trials (within ``tuning.timeout_s``) to the study.

    A trial that fails with an RxVisionError (say training diverged) is recorded as failed
    and the study goes on; when no trial of the study has completed, that is an error.
    """
    tuning = base.tuning
    params = parse_space(base)
    study = open_study(tuning, url)
    _enqueue(study, tuning.enqueue)
    before = {t.number for t in study.trials if t.state != optuna.trial.TrialState.WAITING}
    started = time.perf_counter()
    study.optimize(
        make_objective(base, params, splits, runs_dir / tuning.study_name, url, fit),
        n_trials=tuning.n_trials,
        timeout=tuning.timeout_s,
        catch=(TrialFailed,),
        callbacks=[_progress(tuning.n_trials)],
    )
    trials = [trial_record(t) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        errors = [t["error"] for t in trials if t["error"]]
        raise RxVisionError(
            f"no trial of study '{tuning.study_name}' completed"
            + (f"; the first error: {errors[0]}" if errors else ""),
            "check that the base config trains on its own (run the training pipeline) "
            "and widen the search space",
        )
    best = study.best_trial
    return StudyOutcome(
        study_name=tuning.study_name,
        storage=masked(url),
        metric=tuning.metric,
        direction=tuning.direction,
        new_trials=[t["number"] for t in trials if t["number"] not in before],
        trials=trials,
        best={"number": best.number, "value": best.value, "params": dict(best.params)},
        elapsed_s=time.perf_counter() - started,
    )
