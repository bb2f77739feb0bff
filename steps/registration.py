"""Quality gate and registration in the ZenML Model Control Plane (mirrored into MLflow).

Every trained model is a version of the ZenML model ``rxvision-classifier`` (the pipeline's
``Model``). The gate (rxvision.registry.gate) decides its stage: floors passed -> staging;
floors passed and better than the production version on the same test split -> production
(the first that passes becomes production). A rejected version keeps no stage and its
metadata says which rule failed.

MLflow 3 has no model stages: the stage is mirrored as a registered-model alias
(``production`` / ``staging``, which MLflow moves from the previous holder) plus a
``rxvision.stage`` tag on the MLflow model version. The MLflow model is a pyfunc model
(rxvision.registry.mlflow_pyfunc), loadable with ``mlflow.pyfunc.load_model``.

Every stage change (here and by ``run.py --promote``) is appended to the version's
``stage_history`` metadata, including the previous production version being archived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages, StackComponentType
from zenml.logger import get_logger
from zenml.types import HTMLString

from rxvision.data.split import DatasetSplits
from rxvision.names import MLFLOW_STAGE_TAG, VERSION_NAME_KEY, VERSION_NUMBER_KEY
from steps.common import (
    EVALUATION,
    GATE_DECISION,
    MLFLOW_STAGE_ALIASES,
    MODEL_BUNDLE,
    MODEL_CARD,
    MODEL_NAME,
    REGISTRATION,
    scalar_metrics,
    to_config,
)

logger = get_logger(__name__)


def production_version(model_name: str = MODEL_NAME) -> Any | None:
    """The ZenML model version currently in production, or None."""
    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def champion_input(
    test_fingerprint: str, splits: DatasetSplits, cfg: Any, exclude: Any = None
) -> Any:
    """The production version's gate evidence on this test split (re-scored on it when it
    was evaluated on another one), or None without a production version (or when it is
    ``exclude``, the candidate itself)."""
    from rxvision.evaluation import EvaluationResult
    from rxvision.evaluation.model_eval import evaluate_bundle
    from rxvision.registry import GateInput

    champ_mv = production_version()
    if champ_mv is None or (exclude is not None and champ_mv.id == exclude):
        return None
    name = f"version {champ_mv.name}"
    champ_eval = champ_mv.get_artifact(EVALUATION).load()
    champ_fp = champ_eval.get("test_fingerprint", "")
    if champ_fp != test_fingerprint and champ_eval.get("classes") == list(splits.classes):
        logger.info("re-scoring production %s on this test split", name)
        result = evaluate_bundle(champ_mv.get_artifact(MODEL_BUNDLE).load(), splits.test, cfg)
        champ_fp = test_fingerprint
    else:  # same split; or other classes, which the gate reports as not comparable
        result = EvaluationResult.from_dict(champ_eval)
    return GateInput.from_evaluation(result, champ_fp, name=name)


@step(enable_cache=False)
def quality_gate(
    evaluation: dict[str, Any], test_fingerprint: str, splits: DatasetSplits, config: dict[str, Any]
) -> Annotated[dict[str, Any], GATE_DECISION]:
    """Floors, then champion/challenger on the same test split (the champion is re-scored
    on this split when it was evaluated on another one)."""
    from rxvision.evaluation import EvaluationResult
    from rxvision.registry import GateInput, decide

    cfg = to_config(config)
    me = get_step_context().model
    candidate = GateInput.from_evaluation(
        EvaluationResult.from_dict(evaluation), test_fingerprint, name=f"version {me.version}"
    )
    champion = champion_input(test_fingerprint, splits, cfg)
    decision = decide(candidate, champion, cfg.gate)
    for line in decision.reasons:
        logger.info("gate: %s", line)
    out = decision.to_dict()
    log_metadata(
        {
            "gate_stage": str(decision.stage or "rejected"),
            "failed_rules": [r.rule for r in decision.failed_rules],
        }
    )
    return out


@step(enable_cache=False)
def register_model(
    gate_decision: dict[str, Any],
    model_bundle: Path,
    evaluation: dict[str, Any],
    dataset_fingerprint: str,
    test_fingerprint: str,
    config: dict[str, Any],
) -> tuple[Annotated[dict[str, Any], REGISTRATION], Annotated[HTMLString, MODEL_CARD]]:
    """Record the version's evidence, set its stage, mirror it into MLflow's registry, and
    draw its model card (static HTML: the dashboard shows it)."""
    from rxvision.registry.model_card import render_model_card
    from steps.tracking import git_commit

    context = get_step_context()
    model = context.model
    stage = gate_decision.get("stage")
    metadata = {
        "metrics": scalar_metrics(evaluation["metrics"]),
        "dataset_fingerprint": dataset_fingerprint,
        "test_fingerprint": test_fingerprint,
        "config": config,
        "gate": {
            "stage": stage or "rejected",
            "passed_floors": gate_decision["passed_floors"],
            "beats_champion": gate_decision.get("beats_champion"),
            "reasons": gate_decision["reasons"],
            "failed_rules": [r["rule"] for r in gate_decision["rules"] if r["passed"] is False],
        },
        "lineage": {
            "pipeline_run": context.pipeline_run.name,
            "pipeline_run_id": str(context.pipeline_run.id),
            "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        },
    }
    entry = {
        "at": _now(),
        "from": "none",
        "to": stage or "rejected",
        "by": "quality_gate",
        "forced": False,
        "pipeline_run": context.pipeline_run.name,
    }
    metadata["stage_history"] = [entry]
    if stage in ("production", "staging"):
        set_stage(
            model.model_version_id, stage, source=f"quality gate of {context.pipeline_run.name}"
        )
    mlflow_info = _mirror_to_mlflow(model_bundle, model, stage)
    if mlflow_info:
        metadata["mlflow"] = mlflow_info
    model.log_metadata(metadata)
    registration = {
        "model": MODEL_NAME,
        "version": str(model.version),
        "stage": stage,
        "metrics": metadata["metrics"],
        "mlflow": mlflow_info,
        "reasons": gate_decision["reasons"],
    }
    logger.info("registered %s version %s: %s", MODEL_NAME, model.version, stage or "rejected")
    card = render_model_card(
        model=MODEL_NAME,
        version=str(model.version),
        stage=stage,
        metrics=evaluation["metrics"],
        gate_rules=gate_decision["rules"],
        stage_history=metadata["stage_history"],
        dataset_fingerprint=dataset_fingerprint,
        test_fingerprint=test_fingerprint,
        lineage={**metadata["lineage"], "mlflow_version": (mlflow_info or {}).get("version")},
        classes=evaluation.get("classes"),
        backbone=(config.get("model") or {}).get("backbone"),
    )
    return registration, HTMLString(card)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stage_history(mv: Any) -> list[dict[str, Any]]:
    """The version's recorded stage changes, oldest first."""
    history = (mv.run_metadata or {}).get("stage_history")
    return list(history) if isinstance(history, list) else []


def record_stage_change(mv: Any, entry: dict[str, Any]) -> None:
    """Append one entry to the version's ``stage_history`` metadata (ZenML keeps the latest
    value of a key, so the whole list is logged again)."""
    from rxvision.registry.promotion import append_history

    log_metadata(
        {"stage_history": append_history(stage_history(mv), entry)}, model_version_id=mv.id
    )


def set_stage(version: Any, stage: str, source: str) -> None:
    """Set the ZenML stage of a version of ``rxvision-classifier``. A version that held
    production or staging before is archived by ZenML: that change goes into its history
    and its MLflow mirror too."""
    client = Client()
    previous = None
    if stage in ("production", "staging"):
        try:
            previous = client.get_model_version(MODEL_NAME, ModelStages(stage))
        except KeyError:
            previous = None
    mv = client.get_model_version(MODEL_NAME, version)
    if previous is not None and previous.id == mv.id:
        previous = None
    client.update_model_version(
        model_name_or_id=MODEL_NAME, version_name_or_id=mv.id, stage=ModelStages(stage), force=True
    )
    if previous is not None:
        previous = client.get_model_version(MODEL_NAME, previous.id)
        record_stage_change(
            previous,
            {
                "at": _now(),
                "from": stage,
                "to": "archived",
                "by": source,
                "forced": False,
                "replaced_by": str(mv.name),
            },
        )
        mirror_stage(previous, "archived")


def _mlflow_enabled() -> bool:
    registry = Client().active_stack_model.components.get(StackComponentType.MODEL_REGISTRY)
    return bool(registry) and registry[0].flavor_name == "mlflow"


def mirror_stage(mv: Any, stage: str) -> dict[str, Any] | None:
    """Mirror a ZenML stage onto the MLflow model version registered for ``mv``: alias
    (production/staging) and the ``rxvision.stage`` tag. None without an MLflow mirror."""
    info = (mv.run_metadata or {}).get("mlflow")
    if not _mlflow_enabled() or not isinstance(info, dict) or not info.get("version"):
        return None
    import mlflow
    from mlflow.tracking import MlflowClient

    tracker = Client().active_stack.experiment_tracker
    if tracker is not None and tracker.flavor == "mlflow":
        mlflow.set_tracking_uri(tracker.get_tracking_uri())
    client = MlflowClient()
    version = str(info["version"])
    for alias in client.get_model_version(MODEL_NAME, version).aliases:
        if alias in MLFLOW_STAGE_ALIASES.values() and alias != MLFLOW_STAGE_ALIASES.get(stage):
            client.delete_registered_model_alias(MODEL_NAME, alias)
    if stage in MLFLOW_STAGE_ALIASES:
        client.set_registered_model_alias(MODEL_NAME, MLFLOW_STAGE_ALIASES[stage], version)
    client.set_model_version_tag(MODEL_NAME, version, MLFLOW_STAGE_TAG, stage)
    return {"version": version, "alias": MLFLOW_STAGE_ALIASES.get(stage)}


def _mirror_to_mlflow(bundle: Path, model: Any, stage: str | None) -> dict[str, Any] | None:
    """Log the bundle into the run as an MLflow pyfunc model and register it as a version of
    the MLflow model of the same name; the stage becomes an alias. None when the stack has
    no MLflow model registry."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from rxvision.registry.mlflow_pyfunc import log_pyfunc

    run = mlflow.active_run()
    if not _mlflow_enabled() or run is None:
        return None
    client = MlflowClient()
    try:
        client.get_registered_model(MODEL_NAME)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            MODEL_NAME, description="RxVision pill classifier (mirrors ZenML)"
        )
    logged = log_pyfunc(bundle)
    mv = client.create_model_version(
        MODEL_NAME,
        source=logged.model_uri,
        run_id=run.info.run_id,
        model_id=getattr(logged, "model_id", None),
        tags={
            VERSION_NUMBER_KEY: str(model.number),
            VERSION_NAME_KEY: str(model.version),
            MLFLOW_STAGE_TAG: stage or "rejected",
        },
    )
    if stage in MLFLOW_STAGE_ALIASES:
        client.set_registered_model_alias(MODEL_NAME, MLFLOW_STAGE_ALIASES[stage], mv.version)
    return {
        "run_id": run.info.run_id,
        "registered_model": MODEL_NAME,
        "version": str(mv.version),
        "alias": MLFLOW_STAGE_ALIASES.get(stage or ""),
        "model_uri": logged.model_uri,
    }
