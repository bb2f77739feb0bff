"""A materializer for reports kept twice: as a static page the dashboard shows and as the
interactive HTML it came from (Evidently's, drawn by JavaScript, which the dashboard's
sandboxed frame does not run). Both are visualizations of one artifact: the static page
first (what the dashboard opens), the interactive one second, to pick and download."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from rxvision.monitoring.report_html import ReportPages

STATIC_FILE = "report.html"
# the dashboard names a visualization by its file name: say what it is
INTERACTIVE_FILE = "interactive-evidently-report-download.html"


class ReportPagesMaterializer(BaseMaterializer):
    """Stores ``report.html`` and, when there is one, the interactive report beside it."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ReportPages,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def load(self, data_type: type[Any]) -> ReportPages:
        static = _read(os.path.join(self.uri, STATIC_FILE))
        interactive_path = os.path.join(self.uri, INTERACTIVE_FILE)
        interactive = _read(interactive_path) if fileio.exists(interactive_path) else ""
        return ReportPages(static, interactive)

    def save(self, data: ReportPages) -> None:
        _write(os.path.join(self.uri, STATIC_FILE), str(data))
        if data.interactive:
            _write(os.path.join(self.uri, INTERACTIVE_FILE), data.interactive)

    def save_visualizations(self, data: ReportPages) -> dict[str, VisualizationType]:
        pages = {os.path.join(self.uri, STATIC_FILE): VisualizationType.HTML}
        if data.interactive:
            pages[os.path.join(self.uri, INTERACTIVE_FILE)] = VisualizationType.HTML
        return pages


def _read(path: str) -> str:
    with fileio.open(path, "r") as fh:
        return fh.read()


def _write(path: str, text: str) -> None:
    with fileio.open(path, "w") as fh:
        fh.write(text)
