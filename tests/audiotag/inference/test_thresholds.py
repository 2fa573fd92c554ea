"""audiotag/inference/thresholds.py: per-label thresholds at max F1, the fallback for labels
with few positives, and the scores of tags at those thresholds."""

from __future__ import annotations

import numpy as np

from audiotag.inference.thresholds import (
    best_f1_threshold,
    calibrate_thresholds,
    f1_scores,
    threshold_scores,
    top_k_predicted,
)


def test_the_threshold_is_the_max_f1_cut_halfway_below_the_lowest_probability_kept() -> None:
    truth = np.array([1, 1, 0, 1, 0, 0], bool)
    probs = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    # Cuts: {.9}: F1 .5; {.9,.8}: .8; +.7: .667; +.4: .857 (best); +.3: .75; all: .667
    assert best_f1_threshold(truth, probs) == (0.4 + 0.3) / 2
    assert best_f1_threshold(np.zeros(3, bool), np.array([0.1, 0.2, 0.3])) is None


def test_labels_with_few_positives_get_the_global_threshold_and_are_named() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 3), bool)
    truth[:20, 0] = True  # many positives
    truth[:2, 1] = True  # two: too few
    probs = rng.uniform(0, 0.3, size=(40, 3))
    probs[:20, 0] += 0.6
    probs[:2, 1] = 0.99
    t = calibrate_thresholds(truth, probs, ("a", "b", "c"))
    assert t.fallback == ("b", "c")
    assert t.by_label["b"] == t.by_label["c"] == t.global_threshold
    assert 0.3 < t.by_label["a"] < 0.6  # between the negatives and the positives
    round_trip = type(t).from_json(t.to_json())
    np.testing.assert_allclose(round_trip.array(("a", "b", "c")), t.array(("a", "b", "c")), 1e-5)
    scores = threshold_scores(truth, probs, t, ("a", "b", "c"))
    assert scores["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "positives": 20}


def test_f1_counts_precision_recall_and_micro_f1_over_every_pair() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 0]], bool)
    pred = np.array([[1, 1], [0, 1], [0, 0]], bool)
    s = f1_scores(truth, pred)
    np.testing.assert_allclose(s["precision"], [1.0, 0.5])
    np.testing.assert_allclose(s["recall"], [0.5, 1.0])
    assert s["micro_f1"] == 2 * 2 / (2 * 2 + 1 + 1)
    assert top_k_predicted(np.array([[0.1, 0.7, 0.5]]), 2).tolist() == [[False, True, True]]
