"""Model registry logic that needs no registry: the quality gate deciding a model's stage."""

from rxvision.registry.gate import GateDecision, GateInput, RuleOutcome, decide, majority_baseline

__all__ = ["GateDecision", "GateInput", "RuleOutcome", "decide", "majority_baseline"]
