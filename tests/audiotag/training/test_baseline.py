"""The linear baseline: pooled statistics of each clip, one logistic regression per label."""

import numpy as np

from audiotag.training.baseline import LinearBaseline, pooled_stats
from tests.helpers.training import N_MELS, synthetic_store


def test_pooled_stats_are_each_clips_mean_and_std_over_time() -> None:
    data, clips = synthetic_store(n=6)
    x = pooled_stats(data, clips)
    assert x.shape == (6, 2 * N_MELS)
    o, f = clips.offsets[2], clips.frames[2]
    np.testing.assert_allclose(x[2, :N_MELS], data[o : o + f].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(x[2, N_MELS:], data[o : o + f].std(axis=0), rtol=1e-5)


def test_the_baseline_learns_what_the_statistics_separate() -> None:
    data, clips = synthetic_store(n=48)
    x, y = pooled_stats(data, clips), clips.targets
    probs = LinearBaseline().fit(x[:32], y[:32]).predict(x[32:])
    assert probs.shape == (16, 2)
    assert ((probs[:, 1] > probs[:, 0]) == (y[32:, 1] > 0)).all()


def test_a_label_absent_from_training_is_predicted_at_its_frequency() -> None:
    data, clips = synthetic_store(n=48)
    x = pooled_stats(data, clips)
    y = np.concatenate([clips.targets, np.zeros((48, 1), dtype=np.float32)], axis=1)
    probs = LinearBaseline().fit(x, y).predict(x)
    assert probs.shape == (48, 3) and (probs[:, 2] == 0).all()
