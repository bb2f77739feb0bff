"""What a step writes, as the dashboard's Logs tab shows it.

ZenML 0.98 stores every log record of a step with its level, and every write to stderr as
one ERROR record (``zenml.logger._wrapped_write``). Informational output that libraries send
to stderr therefore showed up as errors: tqdm progress bars (the training loop's, MLflow's
"Downloading artifacts") and MLflow's own log handler. The pipelines' ``on_init`` hook,
:func:`route_step_output`, runs once in every process that executes steps (ZenML's hook, so
it also runs in a Kubernetes pod) and sends

- MLflow's loggers through the root logger, where ZenML records them at their own level
  (INFO stays INFO), instead of MLflow's stderr handler;
- progress-bar redraws (text starting with a carriage return) to the terminal only: they
  still animate in the console but are not stored (the training loop logs one INFO line per
  epoch, which is what the stored log keeps).

Everything else written to stderr (a traceback a library prints, a real error message) is
still recorded as ERROR, and ZenML itself still records a failing step's exception as ERROR.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

# MLflow configures its loggers on import unless told not to; these are the loggers it owns
MLFLOW_LOGGERS = ("mlflow", "alembic", "huey", "sqlalchemy.engine")
# left at INFO they fill a step's log with database migration chatter
QUIET_LOGGERS = ("alembic", "huey", "sqlalchemy.engine")


class ProgressToTerminal:
    """A stand-in for ``sys.stderr`` that sends progress redraws to the terminal and every
    other write on to the stream it replaced (which ZenML captures)."""

    def __init__(self, captured: TextIO, terminal: Any | None) -> None:
        self.captured = captured
        self._terminal = terminal  # a binary stream, or None to drop redraws

    def write(self, text: str) -> int:
        if is_progress_redraw(text):
            if self._terminal is not None:
                try:
                    self.captured.flush()  # keep the order of what is already buffered
                    self._terminal.write(text.encode(self.encoding or "utf-8", "replace"))
                    self._terminal.flush()
                except (OSError, ValueError):
                    pass  # a closed terminal must not fail the step
            return len(text)
        return self.captured.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self.captured, name)


def is_progress_redraw(text: str) -> bool:
    """A tqdm-style redraw: it starts by returning the cursor to the line's start."""
    return text.startswith("\r")


def route_step_output() -> None:
    """The pipelines' ``on_init`` hook (idempotent): see the module docstring."""
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # for an MLflow imported later
    for name in MLFLOW_LOGGERS:
        log = logging.getLogger(name)
        # MLflow's own handler is a plain StreamHandler on stderr
        log.handlers = [h for h in log.handlers if type(h) is not logging.StreamHandler]
        log.propagate = True
    for name in QUIET_LOGGERS:
        log = logging.getLogger(name)
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    if not isinstance(sys.stderr, ProgressToTerminal):
        raw = getattr(sys.__stderr__, "buffer", None)  # below ZenML's wrapper of write()
        sys.stderr = ProgressToTerminal(sys.stderr, raw)


def restore_step_output() -> None:
    """The pipelines' ``on_cleanup`` hook: give ``sys.stderr`` back."""
    if isinstance(sys.stderr, ProgressToTerminal):
        sys.stderr = sys.stderr.captured


# every pipeline's decorator takes these: @pipeline(..., **OUTPUT_HOOKS)
OUTPUT_HOOKS: dict[str, Any] = {"on_init": route_step_output, "on_cleanup": restore_step_output}
