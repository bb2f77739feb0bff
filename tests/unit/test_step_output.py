"""Where a step's output goes (steps/step_output.py): progress redraws to the terminal only,
everything else on to the captured stream; MLflow's loggers through the root logger."""

from __future__ import annotations

import io
import logging
import sys

from steps.step_output import ProgressToTerminal, restore_step_output, route_step_output


def test_progress_redraws_go_to_the_terminal_and_other_text_is_captured() -> None:
    captured, terminal = io.StringIO(), io.BytesIO()
    stream = ProgressToTerminal(captured, terminal)
    stream.write("\repoch 1/2:  50%|#####     | 1/2")
    stream.write("fatal: the disk is full\n")
    assert terminal.getvalue().decode() == "\repoch 1/2:  50%|#####     | 1/2"
    assert captured.getvalue() == "fatal: the disk is full\n"


def test_routing_sends_mlflow_logs_to_the_root_and_is_undone_on_cleanup(monkeypatch) -> None:
    mlflow_logger = logging.getLogger("mlflow")
    own = logging.StreamHandler(sys.stderr)  # what MLflow installs on import
    monkeypatch.setattr(mlflow_logger, "handlers", [own])
    monkeypatch.setattr(mlflow_logger, "propagate", False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "true")  # restored afterwards
    original = sys.stderr
    route_step_output()
    try:
        assert own not in mlflow_logger.handlers and mlflow_logger.propagate
        assert isinstance(sys.stderr, ProgressToTerminal) and sys.stderr.captured is original
        route_step_output()  # idempotent
        assert sys.stderr.captured is original
    finally:
        restore_step_output()
    assert sys.stderr is original
