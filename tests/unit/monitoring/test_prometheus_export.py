"""The drift decision becomes Prometheus gauges that the alert rules read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from rxvision.monitoring.prometheus import export_drift_status


def _samples(path):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(path.read_text())
        for s in fam.samples
    }


def test_drift_decision_is_written_as_gauges(tmp_path):
    result = {
        "drifted": True,
        "outcome": "drift",
        "share": 0.5,
        "confidence_drop": 0.2,
        "n_current": 80,
    }
    out = export_drift_status(result, "7", tmp_path / "m" / "drift.prom")
    samples = _samples(tmp_path / "m" / "drift.prom")
    assert samples[("rxvision_drift_status", (("model_version", "7"),))] == 1.0
    assert samples[("rxvision_drift_share", (("model_version", "7"),))] == 0.5
    assert (
        samples[("rxvision_drift_outcome", (("model_version", "7"), ("outcome", "drift")))] == 1.0
    )
    assert (
        samples[("rxvision_drift_outcome", (("model_version", "7"), ("outcome", "no_drift")))]
        == 0.0
    )
    assert out["pushed"] is None


def test_no_drift_is_zero_and_a_dead_pushgateway_is_reported(tmp_path):
    result = {"drifted": False, "outcome": "not_enough_data", "share": None, "n_current": 3}
    out = export_drift_status(result, "2", tmp_path / "drift.prom", pushgateway="127.0.0.1:9")
    samples = _samples(tmp_path / "drift.prom")
    assert samples[("rxvision_drift_status", (("model_version", "2"),))] == 0.0
    assert not any(name == "rxvision_drift_share" for name, _ in samples)
    assert out["pushed"] is None and "127.0.0.1:9" in out["push_error"]
