"""MLflow tracking for the training step, through the stack's MLflow experiment tracker.

ZenML opens the MLflow run before a step that names the experiment tracker; this module logs
into that run. The training hook talks to MLflow by run id (not through mlflow's global
active run) because ``devices: N`` trains in DDP worker processes and rank 0 calls the hooks.
"""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common import flatten, scalar_metrics

logger = logging.getLogger(__name__)
# MLflow limits a param value to 6000 characters; ours are short, this guards lists.
_MAX_PARAM_CHARS = 500


@dataclass(frozen=True)
class MlflowEpochHook:
    """A picklable training hook: per-epoch metrics into one MLflow run, by id."""

    tracking_uri: str
    run_id: str

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def on_train_start(self, info: Any) -> None:
        data = info if isinstance(info, dict) else getattr(info, "__dict__", {})
        for key, value in scalar_metrics(dict(data)).items():
            self._client().log_param(self.run_id, f"train_info.{key}", value)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        client = self._client()
        for key, value in scalar_metrics(dict(metrics)).items():
            client.log_metric(self.run_id, key, value, step=int(epoch))

    def on_train_end(self, result_summary: Any) -> None:
        data = (
            result_summary
            if isinstance(result_summary, dict)
            else getattr(result_summary, "__dict__", {})
        )
        for key, value in scalar_metrics(dict(data)).items():
            self._client().log_metric(self.run_id, f"final_{key}", value)


def git_commit(repo: Path) -> str:
    """The checkout's commit (with `-dirty` when modified), or `unknown` outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def installed_packages() -> str:
    """`name==version` of every installed distribution (what pip freeze would say)."""
    pkgs = {(d.metadata["Name"] or "?"): d.version for d in importlib.metadata.distributions()}
    return "\n".join(
        f"{name}=={ver}" for name, ver in sorted(pkgs.items(), key=lambda x: x[0].lower())
    )


def start_tracking(config: dict[str, Any], project_root: Path) -> MlflowEpochHook | None:
    """Log params, config, commit and packages into the active MLflow run; return the hook.

    None when the step runs without an MLflow run (a stack without an experiment tracker).
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        logger.info("no MLflow run is active (the stack has no MLflow experiment tracker)")
        return None
    params = {
        k: (str(v)[:_MAX_PARAM_CHARS] if v is not None else "None")
        for k, v in flatten(config).items()
    }
    mlflow.log_params(params)
    import yaml

    mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config/config.yaml")
    commit = git_commit(project_root)
    mlflow.set_tags({"git_commit": commit, "rxvision.profile": str(config.get("profile"))})
    mlflow.log_text(installed_packages(), "environment/requirements.txt")
    return MlflowEpochHook(tracking_uri=mlflow.get_tracking_uri(), run_id=run.info.run_id)


def log_pngs(plots: dict[str, bytes], folder: str = "plots") -> None:
    """PNG images into the active MLflow run, if any."""
    import mlflow

    if mlflow.active_run() is None:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, png in plots.items():
            path = Path(tmp) / f"{name}.png"
            path.write_bytes(png)
            mlflow.log_artifact(str(path), folder)
