"""whylogs profiles of feature tables: per time window, mergeable across workers and windows,
and a per-column distribution comparison against the training reference.

Profiles are built from the logged traffic rows rather than inside the service: every worker
already writes its own log file, so building (and merging) profiles from rows loses nothing
when a worker dies and keeps the request path cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from rxvision.errors import RxVisionError
from rxvision.monitoring.traffic_log import BENTOML_COLUMNS, LOGGED_AT, MODEL_VERSION

logger = logging.getLogger(__name__)

#: Columns of the whylogs comparison table.
COMPARISON_COLUMNS = ("column", "algorithm", "pvalue", "statistic", "drift_category")
_NOT_PROFILED = (*BENTOML_COLUMNS, LOGGED_AT, MODEL_VERSION)


def _profilable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in _NOT_PROFILED if c in df.columns])


def profile_frame(df: pd.DataFrame):  # -> whylogs DatasetProfileView
    """A whylogs profile view of a feature table (bookkeeping columns left out)."""
    import whylogs as why

    return why.log(pandas=_profilable(df)).view()


def window_profiles(df: pd.DataFrame, window_seconds: int = 3600) -> dict[int, object]:
    """One profile per time window of ``window_seconds`` (key: window start, unix seconds)."""
    if df.empty:
        return {}
    if LOGGED_AT not in df.columns:
        raise RxVisionError(
            f"traffic rows have no '{LOGGED_AT}' column", "log them with bentos.traffic"
        )
    starts = (pd.to_numeric(df[LOGGED_AT]) // window_seconds * window_seconds).astype("int64")
    return {int(start): profile_frame(part) for start, part in df.groupby(starts, sort=True)}


def merge_profiles(views: Iterable[object]):  # -> whylogs DatasetProfileView | None
    """Merge profile views (workers, windows) into one; None for no views."""
    merged = None
    for view in views:
        merged = view if merged is None else merged.merge(view)
    return merged


def traffic_profile(df: pd.DataFrame, window_seconds: int = 3600):  # -> DatasetProfileView | None
    """The traffic's profile, built per time window and merged (as profiles from several
    workers or days would be); None for no rows."""
    return merge_profiles(window_profiles(df, window_seconds).values())


def save_profile(view: object, path: Path) -> Path:
    """Write a profile view as whylogs' binary format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(view.serialize())  # type: ignore[attr-defined]
    return path


def load_profile(path: Path):  # -> whylogs DatasetProfileView
    """Read a profile written by :func:`save_profile`."""
    from whylogs.core import DatasetProfileView

    path = Path(path)
    if not path.is_file():
        raise RxVisionError(f"whylogs profile not found: {path}")
    return DatasetProfileView.deserialize(path.read_bytes())


def compare_profiles(reference_view: object, current_view: object) -> pd.DataFrame:
    """Per-column distribution comparison of two profiles with whylogs' own drift scores
    (KS on the KLL sketches for numbers, chi-square on frequent items for categories).

    Needs whylogs' viz module (it imports IPython); without it the table is empty and the
    reason is logged.
    """
    try:
        from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores
    except ImportError as exc:
        logger.warning(
            "whylogs profile comparison unavailable (%s); install ipython and pybars3", exc
        )
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    scores = calculate_drift_scores(
        target_view=current_view, reference_view=reference_view, with_thresholds=True
    )
    rows = []
    for column, score in sorted(scores.items()):
        if not score:
            continue
        rows.append(
            {
                "column": column,
                "algorithm": score.get("algorithm"),
                "pvalue": float(score["pvalue"]) if score.get("pvalue") is not None else np.nan,
                "statistic": float(score["statistic"])
                if score.get("statistic") is not None
                else np.nan,
                "drift_category": score.get("drift_category"),
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
