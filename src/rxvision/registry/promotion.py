"""Promotion: moving a registered model version between stages by hand, under the gate's rules.

A version goes to ``production`` only if the gate would put it there (its floors, and better
than the current production model on the same test split), to ``staging`` only if it passes
the floors; ``archived`` is always allowed. ``force`` overrides a refusal and must say why: the
reason is kept in the version's stage history next to the rules that were overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rxvision.config import GateConfig
from rxvision.errors import RxVisionError
from rxvision.registry.gate import GateDecision, GateInput, decide

STAGES = ("production", "staging", "archived")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether ``version`` may move from ``current_stage`` to ``target``, and why."""

    version: str
    current_stage: str | None
    target: str
    allowed: bool
    forced: bool
    reason: str | None
    gate: GateDecision | None = None
    messages: list[str] = field(default_factory=list)

    def history_entry(
        self, at: datetime | None = None, source: str = "promotion"
    ) -> dict[str, Any]:
        """One line of the version's stage history (JSON-safe)."""
        at = at or datetime.now(timezone.utc)
        entry: dict[str, Any] = {
            "at": at.isoformat(timespec="seconds"),
            "from": self.current_stage or "none",
            "to": self.target,
            "by": source,
            "forced": self.forced,
        }
        if self.reason:
            entry["reason"] = self.reason
        if self.gate is not None:
            entry["gate_stage"] = self.gate.stage or "rejected"
            entry["failed_rules"] = [r.rule for r in self.gate.failed_rules]
            if self.gate.champion_name:
                entry["champion"] = self.gate.champion_name
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "current_stage": self.current_stage,
            "target": self.target,
            "allowed": self.allowed,
            "forced": self.forced,
            "reason": self.reason,
            "messages": list(self.messages),
            "gate": self.gate.to_dict() if self.gate is not None else None,
        }


def decide_promotion(
    version: str,
    current_stage: str | None,
    target: str,
    candidate: GateInput | None,
    champion: GateInput | None,
    cfg: GateConfig,
    force: bool = False,
    reason: str | None = None,
) -> PromotionDecision:
    """Apply the gate's rules for ``target``. ``candidate`` and ``champion`` must be scored on
    the same test split (re-score the champion first); ``candidate`` may be None only for
    ``archived``. Raises RxVisionError for requests that make no sense."""
    if target not in STAGES:
        raise RxVisionError(f"unknown stage '{target}'", f"choose one of: {', '.join(STAGES)}")
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise RxVisionError(
            "--force needs --reason", 'say why, e.g. --reason "hotfix for label bug"'
        )
    if current_stage == target:
        raise RxVisionError(f"version {version} is already in {target}")
    if target == "archived":
        return PromotionDecision(
            version,
            current_stage,
            target,
            True,
            False,
            reason,
            messages=[f"version {version} is archived"],
        )
    if candidate is None:
        raise RxVisionError(
            f"version {version} has no evaluation to check against the gate",
            "retrain it with the current training pipeline, or archive it",
        )
    gate = decide(candidate, champion, cfg)
    if gate.needs_champion_reevaluation:
        raise RxVisionError(
            "the production model was not scored on the candidate's test split",
            "re-score it on the same split before deciding (a bug if seen here)",
        )
    ok = gate.stage == "production" if target == "production" else gate.passed_floors
    failed = [r.message for r in gate.failed_rules]
    if ok:
        messages = [f"version {version} meets the gate's rules for {target}"]
    elif target == "production" and not failed and gate.stage == "staging":
        failed = [f"version {version} does not beat the production model {gate.champion_name}"]
    if not ok and force:
        messages = [f"FORCED to {target} despite: " + "; ".join(failed), f"reason: {reason}"]
    elif not ok:
        messages = failed or [f"version {version} does not meet the gate's rules for {target}"]
    return PromotionDecision(
        version, current_stage, target, ok or force, not ok and force, reason, gate, messages
    )


def append_history(history: Any, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage history with ``entry`` added (a missing or malformed history starts anew)."""
    items = [dict(h) for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    return [*items, entry]
