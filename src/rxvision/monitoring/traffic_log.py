"""The served-traffic log: where the service writes it and how the monitoring pipeline reads it.

The service logs one JSON line per image with BentoML's default file monitor
(``<log_dir>/<MONITOR_NAME>/data/data.<worker>.log`` plus size-rotated backups ``.1``, ``.2``,
...). Rows hold features and predictions only: never pixels, never file names. This module
reads those files back without importing BentoML.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rxvision.errors import RxVisionError

if TYPE_CHECKING:  # pandas is imported where tables are built: the service only needs the names
    import pandas as pd

logger = logging.getLogger(__name__)

#: Name of the BentoML monitor (and the folder under the log dir) for RxVision traffic.
MONITOR_NAME = "rxvision_traffic"
#: Columns the service adds beside the feature schema.
LOGGED_AT = "logged_at"  # unix seconds, UTC (BentoML's own `timestamp` is naive local time)
MODEL_VERSION = "model_version"
#: Columns BentoML's default monitor adds to every row.
BENTOML_COLUMNS = ("timestamp", "request_id", "trace_id")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_window(text: str) -> timedelta:
    """``"24h"`` -> 24 hours; units s, m, h, d, w. A bad value is a user error."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise RxVisionError(
            f"bad monitoring window '{text}'",
            "write a positive number and a unit s, m, h, d or w, e.g. --window 24h",
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def resolve_log_dir(log_dir: Path | None) -> Path:
    """The traffic log folder: the configured one, else ``$BENTOML_HOME/monitoring``."""
    if log_dir is not None:
        return Path(log_dir).expanduser().resolve()
    home = os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    return Path(home).expanduser().resolve() / "monitoring"


def data_files(log_dir: Path, monitor_name: str = MONITOR_NAME) -> list[Path]:
    """Every worker's data file and its rotated backups, oldest backups first."""
    folder = Path(log_dir) / monitor_name / "data"
    if not folder.is_dir():
        return []

    def order(p: Path) -> tuple[str, int]:
        # data.0.log.3 is older than data.0.log.1, which is older than data.0.log
        suffix = p.name.rsplit(".log", 1)[-1].lstrip(".")
        return (p.name.split(".log")[0], -int(suffix) if suffix.isdigit() else 0)

    return sorted((p for p in folder.iterdir() if p.is_file() and ".log" in p.name), key=order)


def _clean(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def read_traffic_log(
    log_dir: Path,
    window: timedelta | None = None,
    now: float | None = None,
    monitor_name: str = MONITOR_NAME,
) -> pd.DataFrame:
    """Rows logged in the last ``window`` (all rows when None), as a DataFrame.

    Lines that do not parse (e.g. a worker killed mid-write) are skipped and counted in the
    log, never fatal. Returns an empty frame when nothing was logged.
    """
    now = time.time() if now is None else now
    since = None if window is None else now - window.total_seconds()
    rows: list[dict[str, object]] = []
    bad = 0
    for path in data_files(Path(log_dir), monitor_name):
        with path.open("r", encoding="utf8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if not isinstance(row, dict):
                    bad += 1
                    continue
                if since is not None:
                    ts = row.get(LOGGED_AT)
                    if not isinstance(ts, (int, float)) or ts < since or ts > now:
                        continue
                rows.append(row)
    if bad:
        logger.warning("skipped %d unreadable traffic-log lines under %s", bad, log_dir)
    import pandas as pd

    df = pd.DataFrame(rows)
    if len(df) and LOGGED_AT in df:
        df = df.sort_values(LOGGED_AT, kind="stable").reset_index(drop=True)
    return df


def write_traffic_rows(path: Path, rows: pd.DataFrame, logged_at: float | None = None) -> Path:
    """Append rows in the service's log format (one JSON object per line).

    For batch inference and simulations that want monitoring to see their traffic the way
    it sees the service's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.time() if logged_at is None else logged_at
    iso = datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat()
    with path.open("a", encoding="utf8") as fh:
        for rec in rows.to_dict(orient="records"):
            rec = {k: _clean(v) for k, v in rec.items()}
            rec.setdefault(LOGGED_AT, stamp)
            rec.setdefault("timestamp", iso)
            fh.write(json.dumps(rec) + "\n")
    return path
