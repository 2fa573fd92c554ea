import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from audiotag.metrics import lwlrap, lwlrap_per_class


def _random_case(seed: int, n: int = 200, c: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random((n, c)) < 0.15
    truth[np.arange(n), rng.integers(0, c, n)] = True  # at least one label each
    scores = rng.random((n, c))
    scores[rng.random((n, c)) < 0.2] = 0.5  # ties
    return truth, scores


@pytest.mark.parametrize("seed", range(5))
def test_lwlrap_equals_sklearn_with_label_count_weights(seed: int) -> None:
    truth, scores = _random_case(seed)
    expected = label_ranking_average_precision_score(truth, scores, sample_weight=truth.sum(axis=1))
    assert lwlrap(truth, scores) == pytest.approx(expected, abs=1e-12)


def test_per_class_scores_weighted_sum_is_lwlrap() -> None:
    truth, scores = _random_case(7)
    per_class, weights = lwlrap_per_class(truth, scores)
    assert (per_class * weights).sum() == pytest.approx(lwlrap(truth, scores))


def test_perfect_and_whole_set_not_batch_mean() -> None:
    truth, scores = _random_case(3)
    assert lwlrap(truth, truth.astype(float)) == 1.0
    # The mean of per-batch scores is not the whole-set score in general.
    halves = [lwlrap(truth[s], scores[s]) for s in (slice(0, 37), slice(37, None))]
    assert np.mean(halves) != pytest.approx(lwlrap(truth, scores), abs=1e-6)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shapes"):
        lwlrap(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="no true labels"):
        lwlrap(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        lwlrap(np.ones((1, 2)), np.array([[np.nan, 1.0]]))
