"""The training run's one-screen summary prints the test metrics with their intervals."""

from __future__ import annotations

from pipelines.training import print_summary


def test_summary_shows_metrics_with_their_bootstrap_intervals(capsys) -> None:
    out = {
        "run_name": "rxvision_training-1",
        "fingerprint": "ab" * 32,
        "validation": {"passed": True, "excluded": []},
        "registration": {
            "metrics": {
                "accuracy": 0.985,
                "accuracy_ci_low": 0.97,
                "accuracy_ci_high": 0.995,
                "macro_f1": 0.98,
                "macro_f1_ci_low": 0.96,
                "macro_f1_ci_high": 0.99,
                "ece": 0.012,
            },
            "stage": "staging",
            "reasons": ["passed every floor"],
            "model": "rxvision-classifier",
            "version": "3",
        },
    }
    print_summary(out, "python run.py --dashboard")
    text = capsys.readouterr().out
    assert "accuracy 0.9850 [0.9700, 0.9950]" in text
    assert "macro_f1 0.9800 [0.9600, 0.9900]" in text
    assert "ece 0.0120" in text and "staging" in text
