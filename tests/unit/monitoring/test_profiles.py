"""whylogs profiles per time window: mergeable across workers and windows, saved and loaded,
and compared column by column against a reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rxvision.errors import RxVisionError
from rxvision.monitoring import feature_table
from rxvision.monitoring.profiles import (
    compare_profiles,
    load_profile,
    merge_profiles,
    profile_frame,
    save_profile,
    traffic_profile,
    window_profiles,
)
from rxvision.monitoring.traffic_log import LOGGED_AT
from tests.support.simulate import traffic


def _logged(n: int, seed: int, start: float, shift: str = "none") -> pd.DataFrame:
    df = feature_table(traffic(n, seed, shift))  # type: ignore[arg-type]
    df[LOGGED_AT] = start + np.linspace(0, 7000, n)  # spans two hourly windows
    df["model_version"] = "3"
    return df


def _count(view, column: str = "brightness") -> int:
    return int(view.get_column(column).to_summary_dict()["counts/n"])


def test_window_profiles_from_two_workers_merge_to_the_whole():
    t0 = 1_700_000_000 // 3600 * 3600
    worker_a, worker_b = _logged(30, 1, t0), _logged(20, 2, t0)
    windows_a, windows_b = window_profiles(worker_a), window_profiles(worker_b)
    assert sorted(windows_a) == [t0, t0 + 3600]
    merged = merge_profiles([*windows_a.values(), *windows_b.values()])
    whole = profile_frame(pd.concat([worker_a, worker_b]))
    assert _count(merged) == _count(whole) == 50
    mean = merged.get_column("brightness").to_summary_dict()["distribution/mean"]
    assert mean == pytest.approx(pd.concat([worker_a, worker_b])["brightness"].mean(), rel=1e-6)
    # bookkeeping columns are not profiled
    assert "model_version" not in merged.get_columns() and LOGGED_AT not in merged.get_columns()


def test_profile_survives_save_and_load(tmp_path):
    view = traffic_profile(_logged(12, 3, 0.0))
    loaded = load_profile(save_profile(view, tmp_path / "p" / "window.bin"))
    assert _count(loaded) == 12


def test_missing_profile_file_is_reported(tmp_path):
    with pytest.raises(RxVisionError, match="profile not found"):
        load_profile(tmp_path / "none.bin")


def test_rows_without_timestamps_are_reported():
    with pytest.raises(RxVisionError, match="logged_at"):
        window_profiles(feature_table(traffic(3, 0)))


def test_whylogs_comparison_flags_a_darker_stream_and_not_a_similar_one():
    ref = profile_frame(_logged(150, 4, 0.0))
    dark = compare_profiles(ref, profile_frame(_logged(80, 5, 0.0, "dark"))).set_index("column")
    same = compare_profiles(ref, profile_frame(_logged(80, 6, 0.0))).set_index("column")
    assert dark.loc["brightness", "drift_category"] == "DRIFT"
    assert same.loc["brightness", "drift_category"] != "DRIFT"
    assert dark.loc["brightness", "algorithm"] == "ks"
