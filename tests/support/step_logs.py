"""Read a pipeline run's stored step logs back the way the dashboard gets them: from the log
store they were written to (on the local stack, ZenML's artifact log store, read as the
server's logs endpoint reads it), one entry per record with its level."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepLogLine:
    step: str
    level: str
    name: str | None
    message: str


def step_log_lines(run: Any, limit: int = 100_000) -> dict[str, list[StepLogLine]]:
    """Every stored log entry of each step of ``run`` (a ZenML pipeline run response)."""
    from zenml.artifacts.utils import instantiate_artifact_store
    from zenml.client import Client
    from zenml.log_stores.artifact.artifact_log_store import ArtifactLogStore

    client = Client()
    run = client.get_pipeline_run(run.id)
    stores: dict[Any, ArtifactLogStore] = {}
    out: dict[str, list[StepLogLine]] = {}
    for name, step in run.steps.items():
        lines: list[StepLogLine] = []
        for logs in step.log_collection or []:
            if logs.source != "step" or not logs.uri:
                continue
            if logs.artifact_store_id not in stores:  # as the server reads them
                component = client.zen_store.get_stack_component(logs.artifact_store_id)
                stores[logs.artifact_store_id] = ArtifactLogStore.from_artifact_store(
                    instantiate_artifact_store(component)
                )
            store = stores[logs.artifact_store_id]
            for entry in store.fetch(logs_model=logs, limit=limit).items:
                level = getattr(entry.level, "name", str(entry.level))
                lines.append(StepLogLine(name, level, entry.name, entry.message))
        out[name] = lines
    return out


def level_counts(lines: dict[str, list[StepLogLine]]) -> dict[str, Counter]:
    """Per step: how many stored lines at each level."""
    return {step: Counter(line.level for line in entries) for step, entries in lines.items()}
