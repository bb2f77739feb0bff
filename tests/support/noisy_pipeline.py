"""A one-step pipeline that writes what real steps write (a log line, a tqdm progress bar, a
line from an MLflow logger) and, when asked, a genuine error: a message on stderr and an
exception. The dashboard tests read its stored step log back."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm
from zenml import pipeline, step

from steps.step_output import OUTPUT_HOOKS

GENUINE_ERROR = "fatal: the disk is full"
EXCEPTION_TEXT = "noisy step failed on purpose"
MLFLOW_LINE = "mlflow says: creating tables"


@step(enable_cache=False)
def noisy_step(fail: bool) -> int:
    logging.getLogger(__name__).info("working on it")
    for _ in tqdm(range(3), desc="noisy progress", mininterval=0):
        pass
    mlflow_logger = logging.getLogger("mlflow.store.db.utils")
    mlflow_logger.setLevel(logging.INFO)
    mlflow_logger.info(MLFLOW_LINE)
    if fail:
        print(GENUINE_ERROR, file=sys.stderr)
        raise RuntimeError(EXCEPTION_TEXT)
    return 1


@pipeline(enable_cache=False, **OUTPUT_HOOKS)
def noisy_pipeline(fail: bool = False) -> None:
    noisy_step(fail)
