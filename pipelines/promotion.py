"""Promotion of a registered model version to production, staging or archived, with the
quality gate's rules (rxvision.registry.promotion):

    python run.py --promote 3 --to production
    python run.py --promote 3 --to production --force --reason "rollback after incident 42"

The candidate's evaluation is checked against the current production version on the
candidate's own test split (the production model is re-scored on it when needed). The
change goes into the ZenML Model Control Plane (stage + ``stage_history`` metadata) and is
mirrored onto the MLflow registered model's aliases.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from rxvision.config import RxVisionConfig
from rxvision.errors import RxVisionError
from steps.common import EVALUATION, MODEL_NAME, SPLITS

logger = logging.getLogger(__name__)


def promote(
    cfg: RxVisionConfig, version: str, target: str, force: bool = False, reason: str | None = None
) -> dict[str, Any]:
    """Check and apply one stage change; a refused one is an RxVisionError naming the rules."""
    from zenml.client import Client

    from pipelines.deployment import resolve_model_version
    from rxvision.evaluation import EvaluationResult
    from rxvision.registry import GateInput
    from rxvision.registry.promotion import decide_promotion
    from steps.registration import champion_input, mirror_stage, record_stage_change, set_stage

    mv = resolve_model_version(version)
    current = str(getattr(mv.stage, "value", mv.stage) or "none")
    current = None if current == "none" else current
    candidate = champion = None
    if target != "archived":
        evaluation, splits = mv.get_artifact(EVALUATION), mv.get_artifact(SPLITS)
        if evaluation is None or splits is None:
            raise RxVisionError(
                f"version {mv.name} has no '{EVALUATION}' or '{SPLITS}' artifact",
                "retrain it with the current training pipeline, or archive it",
            )
        evaluation, splits = evaluation.load(), splits.load()
        fingerprint = evaluation.get("test_fingerprint", "")
        candidate = GateInput.from_evaluation(
            EvaluationResult.from_dict(evaluation), fingerprint, name=f"version {mv.name}"
        )
        champion = champion_input(fingerprint, splits, cfg, exclude=mv.id)
    decision = decide_promotion(
        str(mv.name), current, target, candidate, champion, cfg.gate, force=force, reason=reason
    )
    if not decision.allowed:
        raise RxVisionError(
            f"version {mv.name} cannot go to {target}: " + "; ".join(decision.messages),
            'improve the model, or override with --force --reason "why"',
        )
    set_stage(mv.id, target, source=f"promotion of version {mv.name}")
    mv = Client().get_model_version(MODEL_NAME, mv.id)
    record_stage_change(mv, decision.history_entry())
    mv = Client().get_model_version(MODEL_NAME, mv.id)
    mirrored = mirror_stage(mv, target)
    refresh_model_card(mv, decision)
    for line in decision.messages:
        (logger.warning if decision.forced else logger.info)("promotion: %s", line)
    return {**decision.to_dict(), "mlflow": mirrored}


def refresh_model_card(mv: Any, decision: Any) -> None:
    """A new version of the ``model_card`` artifact, linked to the model version, so the card
    shows the stage change (the gate's rules as re-checked here, where they were)."""
    from zenml import Model, link_artifact_to_model, save_artifact
    from zenml.types import HTMLString

    from rxvision.registry.model_card import render_model_card
    from steps.common import MODEL_CARD

    meta = mv.run_metadata or {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    mlflow_info = meta.get("mlflow") if isinstance(meta.get("mlflow"), dict) else {}
    card = render_model_card(
        model=MODEL_NAME,
        version=str(mv.name),
        stage=decision.target,
        metrics=dict(meta.get("metrics") or {}),
        gate_rules=decision.gate.to_dict()["rules"] if decision.gate is not None else [],
        stage_history=list(meta.get("stage_history") or []),
        dataset_fingerprint=str(meta.get("dataset_fingerprint", "")),
        test_fingerprint=str(meta.get("test_fingerprint", "")),
        lineage={**(meta.get("lineage") or {}), "mlflow_version": mlflow_info.get("version")},
        classes=(config.get("data") or {}).get("classes"),
        backbone=(config.get("model") or {}).get("backbone"),
    )
    artifact = save_artifact(HTMLString(card), name=MODEL_CARD)
    link_artifact_to_model(artifact, model=Model(name=MODEL_NAME, version=mv.number))


def main(cfg: RxVisionConfig, args: argparse.Namespace) -> int:
    """run.py entry point for --promote VERSION --to STAGE [--force --reason TEXT]."""
    if not getattr(args, "to_stage", None):
        raise RxVisionError("--promote needs --to production|staging|archived")
    out = promote(
        cfg,
        str(args.promote),
        args.to_stage,
        bool(getattr(args, "force", False)),
        getattr(args, "reason", None),
    )
    forced = " (forced)" if out["forced"] else ""
    alias = (
        f"; MLflow alias {out['mlflow']['alias']}"
        if out.get("mlflow") and out["mlflow"].get("alias")
        else ""
    )
    print(
        f"{MODEL_NAME} version {out['version']}: {out['current_stage'] or 'none'} -> "
        f"{out['target']}{forced}{alias}"
    )
    return 0
