"""audiotag/training/batches.py: windows over whole clips, the normaliser, and training
batches that follow from their epoch's seed alone."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from audiotag.config import AugmentSettings
from audiotag.training.batches import (
    Clips,
    Normalizer,
    TrainBatches,
    measure_normalizer,
    window_draws,
    window_starts,
)
from tests.helpers.training import WIDTH, synthetic_store


def test_windows_cover_whole_clip() -> None:
    assert window_starts(10, 64, 0.5).tolist() == [0]
    starts = window_starts(300, 64, 0.5)
    assert starts[0] == 0 and starts[-1] == 300 - 64
    assert np.all(np.diff(starts) <= 32)


@given(
    frames=st.integers(1, 2000),
    width=st.integers(1, 300),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9]),
)
def test_every_frame_of_a_clip_lies_in_a_window_and_no_window_runs_past_its_end(
    frames: int, width: int, overlap: float
) -> None:
    starts = window_starts(frames, width, overlap)
    covered = np.zeros(frames, dtype=bool)
    for s in starts:
        covered[s : s + width] = True
    assert covered.all()
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert frames <= width or starts[-1] + width == frames


def test_the_normaliser_turns_db_frames_into_a_one_channel_mel_by_time_image() -> None:
    x = torch.randn(3, 50, 8) * 10 - 40  # (batch, frames, n_mels) in dB
    out = Normalizer(mean=-40.0, std=10.0, top_db=200.0)(x)
    assert out.shape == (3, 1, 8, 50)
    torch.testing.assert_close(out[1, 0, 5, 17], (x[1, 17, 5] + 40) / 10)


def test_every_clip_is_drawn_evenly_when_an_epoch_draws_more_batches() -> None:
    data, clips = synthetic_store(n=10)
    clips = Clips(clips.offsets, clips.frames, np.eye(10, dtype=np.float32))  # y names the clip
    norm = measure_normalizer(data, clips, 16, 60.0, 0)
    batches = TrainBatches(data, clips, 4, 16, norm, None, None, torch.device("cpu"), 10)
    targets = [y for _, y in batches]
    assert len(targets) == 10 and all(len(y) == 4 for y in targets)
    # 40 draws of 10 clips: 4 shuffled passes, every clip 4 times.
    assert torch.cat(targets).sum(dim=0).tolist() == [4.0] * 10


@given(st.integers(1, 12), st.integers(1, 40), st.integers(1, 9))
def test_a_batch_is_never_larger_than_the_clips_nor_empty(n: int, bs: int, steps: int) -> None:
    # 25 curated clips in 2 folds with batch size 16 and min_steps: every batch was empty
    # once the first pass ran out ("cannot reshape tensor of 0 elements").
    data, clips = synthetic_store(n=n)
    norm = measure_normalizer(data, clips, 16, 60.0, 0)
    batches = TrainBatches(data, clips, bs, 16, norm, None, None, torch.device("cpu"), steps)
    sizes = [len(y) for _, y in batches]
    assert sizes == [min(bs, n)] * steps


def test_an_epochs_batches_follow_from_its_seed_alone() -> None:
    """What lets a resumed fold see the batches an uninterrupted one saw."""
    data, clips = synthetic_store(n=16)
    norm = measure_normalizer(data, clips, WIDTH, 60.0, 0)
    batches = TrainBatches(
        data, clips, 4, WIDTH, norm, AugmentSettings(), None, torch.device("cpu")
    )

    def epoch(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batches.set_epoch(seed)
        return list(batches)

    first, other, again = epoch(7), epoch(8), epoch(7)
    assert len(first) == 4 and first[0][0].shape == (4, 1, data.shape[1], WIDTH)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_a_windows_test_time_draws_do_not_depend_on_the_other_windows_of_its_batch() -> None:
    aug = AugmentSettings()
    frames, starts = np.array([100, 250, 40]), np.array([0, 64, 0])
    together = window_draws(aug, 3, frames, starts)
    alone = window_draws(aug, 3, frames[1:2], starts[1:2])
    assert torch.equal(together[1:2], alone)
    assert not torch.equal(together[0], together[1])  # each window draws its own
    assert not torch.equal(window_draws(aug, 4, frames, starts), together)
