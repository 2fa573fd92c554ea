"""How the baseline is reported beside the network: in words, and per class."""

from audiotag.steps.baseline import BaselineResult, per_class_rows, verdict

BASE = BaselineResult(0.70, 0.75, (0.7,), (0.6, 0.8), (0.7, 0.8))


def test_the_verdict_compares_on_test_when_labelled_and_says_when_the_network_loses() -> None:
    assert verdict(0.80, 0.85, BASE).startswith("The network beats the linear baseline by +0.1000")
    lost = verdict(0.80, 0.70, BASE)
    assert "does NOT beat" in lost and "0.7000 vs 0.7500 test" in lost
    # Without test labels, the out-of-fold scores are compared.
    assert "out-of-fold" in verdict(0.65, None, BaselineResult(0.7, None, (0.7,), (0.6,), None))


def test_per_class_rows_put_the_weakest_label_first_with_the_baselines_beside() -> None:
    scores = {
        "class_weights": {"Bark": 0.5, "Meow": 0.5, "Purr": 0.0},
        "oof_per_class": {"Bark": 0.9, "Meow": 0.4, "Purr": 0.0},
        "test_per_class": None,
        "baseline": {"oof_per_class": {"Bark": 0.8, "Meow": 0.5, "Purr": 0.0}},
    }
    rows = per_class_rows(scores)
    assert [r["label"] for r in rows] == ["Meow", "Bark", "Purr"]
    assert rows[0]["baseline oof"] == 0.5 and rows[0]["test"] is None
    assert rows[-1]["oof"] is None  # no true labels: no score, not a zero
