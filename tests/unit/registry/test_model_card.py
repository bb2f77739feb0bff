"""The model card is static HTML the dashboard can show and it says what the version is."""

from __future__ import annotations

from rxvision.registry.model_card import render_model_card

METRICS = {
    "accuracy": 0.9,
    "accuracy_ci_low": 0.85,
    "accuracy_ci_high": 0.94,
    "macro_f1": 0.88,
    "top3_accuracy": 1.0,
    "ece": 0.03,
}


def _card(classes, metrics=METRICS):
    return render_model_card(
        model="rxvision-classifier",
        version="4",
        stage="production",
        metrics=metrics,
        gate_rules=[
            {"rule": "min_accuracy", "passed": True, "message": "accuracy 0.9 >= 0.8"},
            {"rule": "min_gain", "passed": False, "message": "gain <b>-0.1</b>"},
        ],
        stage_history=[
            {
                "at": "2026-01-01T00:00:00+00:00",
                "from": "none",
                "to": "staging",
                "by": "quality_gate",
                "forced": False,
            },
            {
                "at": "2026-01-02T00:00:00+00:00",
                "from": "staging",
                "to": "production",
                "by": "promotion",
                "forced": True,
                "reason": "hotfix",
            },
        ],
        dataset_fingerprint="a" * 64,
        test_fingerprint="b" * 64,
        lineage={
            "pipeline_run": "rxvision_training-1",
            "git_commit": "c" * 40,
            "mlflow_version": "7",
        },
        classes=classes,
        backbone="tf_efficientnet_lite0",
    )


def test_model_card_is_script_free_and_shows_history_metrics_rules_lineage():
    page = _card(["a", "b", "c", "d", "e"])
    assert "<script" not in page.lower() and "onload" not in page.lower()
    assert "0.850 to 0.940" in page  # the interval
    assert "staging &rarr; production" in page and "forced: hotfix" in page
    assert "FAIL" in page and "gain &lt;b&gt;-0.1&lt;/b&gt;" in page  # escaped
    assert "rxvision_training-1" in page and "MLflow" in page and "a" * 64 in page
    assert "top3_accuracy" in page


def test_top3_is_left_out_where_it_cannot_mean_anything():
    assert "top3_accuracy" not in _card(["a", "b"])


def test_model_card_shows_the_top_k_the_evaluation_measured():
    from rxvision.evaluation.metrics import top_k_key, top_k_keys

    metrics = {"accuracy": 0.9, "macro_f1": 0.88, "ece": 0.03, "top5_accuracy": 0.97}
    assert top_k_keys(metrics) == {"top5_accuracy": 5} and top_k_key(5) == "top5_accuracy"
    page = _card(list("abcdef"), metrics)
    assert "top5_accuracy" in page and "0.9700" in page
    assert "top5_accuracy" not in _card(list("abcde"), metrics)  # top-5 of 5 classes
