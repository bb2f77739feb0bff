"""Traffic logging through BentoML's real monitoring API (in-process, files in tmp_path),
and reading the log back."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from bentos.traffic import TrafficLogger, monitoring_options, monitoring_service_config
from rxvision.config import ServingConfig
from rxvision.errors import RxVisionError
from rxvision.monitoring import EmbeddingProjector, feature_columns
from rxvision.monitoring.traffic_log import (
    LOGGED_AT,
    data_files,
    parse_window,
    read_traffic_log,
    write_traffic_rows,
)
from tests.support.simulate import encoded_size, traffic

CLASSES = ["aspirin", "ibuprofen", "metformin"]


def _logger(tmp_path, **kw) -> tuple[TrafficLogger, str]:
    # BentoML caches monitors by name per process: a fresh name keeps tests apart.
    name = f"rx_{uuid.uuid4().hex[:8]}"
    opts = monitoring_options(ServingConfig(**kw.pop("serving", {})), tmp_path)
    return TrafficLogger(
        CLASSES, model_version="7", monitor_name=name, monitor_options=opts, **kw
    ), name


def _probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(len(CLASSES)), size=n)


def test_each_image_is_logged_as_one_row_of_features_and_prediction(tmp_path):
    emb = np.random.default_rng(0).normal(size=(30, 16))
    proj = EmbeddingProjector.fit(emb, 2)
    tl, name = _logger(tmp_path, projector=proj)
    images = traffic(5, seed=0)
    sizes = [encoded_size(i) for i in images]
    assert tl.log_prediction(images, _probs(5), file_sizes=sizes, embeddings=emb[:5]) == 5
    assert tl.log_prediction(images[:2], _probs(2), file_sizes=sizes[:2], embeddings=emb[:2]) == 2
    df = read_traffic_log(tmp_path, monitor_name=name)
    assert len(df) == 7 and tl.rows == 7 and tl.errors == 0
    assert set(feature_columns(2)) <= set(df.columns)
    assert df["model_version"].eq("7").all()
    assert df["predicted_class"].isin(CLASSES).all()
    assert df["file_size"].tolist()[:5] == sizes
    assert not df[list(feature_columns(2))].isna().any().any()
    # privacy: no pixels, no file names: every value is a scalar
    raw = (tmp_path / name / "data").glob("data.*.log")
    for line in next(raw).read_text().splitlines():
        assert all(not isinstance(v, (list, dict)) for v in json.loads(line).values())


weird_inputs = [
    (None, None),
    ("not images", [[1.0]]),
    ([np.zeros((0, 0, 3), np.uint8)], _probs(1)),
    ([np.zeros((8, 8, 3), np.uint8)], _probs(2)),  # probs for 2 images, 1 image
    ([np.zeros((8, 8, 3), np.uint8)], np.full((1, 3), np.nan)),  # NaN probabilities
    ([np.zeros((8, 8, 3), np.uint8)], np.ones((1, 5))),  # wrong number of classes
    ([np.zeros(7)], _probs(1)),
    ([object()], _probs(1)),
]


@pytest.mark.parametrize(("images", "probs"), weird_inputs)
def test_traffic_logging_never_raises_on_weird_input(tmp_path, images, probs):
    tl, name = _logger(tmp_path)
    tl.log_prediction(images, probs, file_sizes=None)
    # the logger still works after a bad batch
    assert tl.log_prediction(traffic(2, seed=1), _probs(2)) == 2
    assert len(read_traffic_log(tmp_path, monitor_name=name)) >= 2


def test_bad_batches_are_counted_not_raised(tmp_path):
    tl, _ = _logger(tmp_path)
    assert tl.log_prediction([np.zeros(3)], _probs(1)) == 0
    assert tl.log_prediction(traffic(1, seed=0), _probs(1), file_sizes=[1, 2]) == 0
    assert tl.errors == 2 and tl.rows == 0


def test_log_files_stay_within_the_size_bound(tmp_path):
    tl, name = _logger(tmp_path, serving={"log_max_bytes": 2048, "log_backups": 2})
    for seed in range(40):
        tl.log_prediction(traffic(3, seed=seed, size=32), _probs(3, seed))
    files = data_files(tmp_path, name)
    assert len(files) == 3  # data.0.log + two backups; older rows were rotated away
    row_bytes = max(len(line) for line in files[-1].read_text().splitlines()) + 1
    assert sum(f.stat().st_size for f in files) <= 3 * (2048 + row_bytes)
    assert 0 < len(read_traffic_log(tmp_path, monitor_name=name)) < 120


def test_disabled_logging_writes_nothing(tmp_path):
    tl, name = _logger(tmp_path, enabled=False)
    assert tl.log_prediction(traffic(2, seed=0), _probs(2)) == 0
    assert read_traffic_log(tmp_path, monitor_name=name).empty


def test_service_config_enables_a_size_rotating_default_monitor(tmp_path):
    cfg = ServingConfig(log_dir=tmp_path, log_max_bytes=4096, log_backups=3, monitoring=False)
    conf = monitoring_service_config(cfg)
    assert conf["enabled"] is False and conf["type"] == "default"
    text = (tmp_path / "logging.yaml").read_text()
    assert "RotatingFileHandler" in text and "maxBytes: 4096" in text and "backupCount: 3" in text
    assert conf["options"]["log_path"] == str(tmp_path.resolve())


def test_reading_a_window_keeps_only_recent_rows(tmp_path):
    now = time.time()
    rows = pd.DataFrame({"brightness": [0.1, 0.2], "predicted_class": ["a", "b"]})
    path = tmp_path / "rxvision_traffic" / "data" / "data.0.log"
    write_traffic_rows(path, rows, logged_at=now - 3 * 86400)
    write_traffic_rows(path, rows.assign(brightness=[0.3, 0.4]), logged_at=now - 60)
    with path.open("a") as fh:
        fh.write('{"truncated": \n')  # a worker killed mid-line
    recent = read_traffic_log(tmp_path, window=timedelta(hours=24), now=now)
    assert recent["brightness"].tolist() == [0.3, 0.4]
    assert len(read_traffic_log(tmp_path, now=now)) == 4
    assert recent[LOGGED_AT].min() >= now - 86400


@pytest.mark.parametrize("text", ["24x", "-1h", "0h", "", "h"])
def test_bad_window_is_reported(text):
    with pytest.raises(RxVisionError, match="bad monitoring window"):
        parse_window(text)


def test_window_units_are_understood():
    assert parse_window("24h") == timedelta(days=1)
    assert parse_window("30m") == timedelta(minutes=30)
    assert parse_window("2w") == timedelta(days=14)


def test_first_batch_is_logged_whole_without_duplicate_column_warnings(tmp_path, caplog):
    tl, name = _logger(tmp_path)
    with caplog.at_level("WARNING"):
        assert tl.log_prediction(traffic(4, seed=3), _probs(4)) == 4
    assert "duplicated" not in caplog.text
    assert len(read_traffic_log(tmp_path, monitor_name=name)) == 4


def test_sampled_logging_keeps_each_row_with_its_own_upload(tmp_path):
    tl, name = _logger(tmp_path, sample_rate=0.25, seed=1)
    rng = np.random.default_rng(0)
    for seed in range(25):
        sides = rng.integers(20, 90, size=8)
        images = [np.full((s, s, 3), 120, np.uint8) for s in sides]
        tl.log_prediction(images, _probs(8, seed), file_sizes=[int(s) for s in sides])
    df = read_traffic_log(tmp_path, monitor_name=name)
    assert 20 <= len(df) <= 80 and tl.rows == len(df) and tl.errors == 0  # ~50 of 200
    assert (df["file_size"] == df["width"]).all()  # sampling kept rows aligned


def test_a_second_logger_with_other_files_writes_into_its_own_folder(tmp_path):
    # BentoML keeps one monitor per name per process; a later logger for another folder (a
    # new state folder, batch inference elsewhere) must not write into the first one's files.
    name = f"rx_{uuid.uuid4().hex[:8]}"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, n in ((first, 3), (second, 2)):
        opts = monitoring_options(ServingConfig(), folder)
        tl = TrafficLogger(CLASSES, monitor_name=name, monitor_options=opts)
        assert tl.log_prediction(traffic(n, seed=n), _probs(n)) == n
    assert len(read_traffic_log(first, monitor_name=name)) == 3
    assert len(read_traffic_log(second, monitor_name=name)) == 2


def test_calibrated_flags_are_logged_and_missing_ones_are_nan(tmp_path):
    tl, name = _logger(tmp_path)
    images = traffic(3, seed=4)
    # the confidence stays the plain softmax top-1 (what the drift reference stores)
    probs = _probs(3, seed=4)
    assert (
        tl.log_prediction(
            images, probs, uncertain=[True, False, True], unknown=[False, False, True]
        )
        == 3
    )
    assert tl.log_prediction(traffic(2, seed=5), _probs(2)) == 2  # an uncalibrated model's rows
    df = read_traffic_log(tmp_path, monitor_name=name)
    assert df["uncertain"].tolist()[:3] == [1.0, 0.0, 1.0] and df["unknown"].tolist()[:3] == [
        0.0,
        0.0,
        1.0,
    ]
    assert df["uncertain"].iloc[3:].isna().all() and df["unknown"].iloc[3:].isna().all()
    assert np.allclose(df["confidence"].iloc[:3], probs.max(axis=1))
    assert tl.log_prediction(traffic(2, seed=6), _probs(2), uncertain=[True]) == 0  # wrong length
