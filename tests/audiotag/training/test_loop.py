"""audiotag/training/loop.py: the epoch callback inside a real one-epoch fastai fit."""

from __future__ import annotations

import math

import torch
from torch import nn

from audiotag.training.batches import TrainBatches, measure_normalizer
from audiotag.training.learner import build_learner
from audiotag.training.loop import EpochLoop
from tests.helpers.training import N_MELS, WIDTH, synthetic_store

CPU = torch.device("cpu")


def fit_one_epoch(seed: int, first_epoch: int) -> tuple[list[tuple], list[float], TrainBatches]:
    """A linear net fitted for one epoch (4 batches of 8) under an ``EpochLoop``."""
    data, clips = synthetic_store(n=32)
    norm = measure_normalizer(data, clips, WIDTH, 60.0, 0)
    batches = TrainBatches(data, clips, 8, WIDTH, norm, None, None, CPU)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(N_MELS * WIDTH, 2))
    finished: list[tuple] = []
    lrs: list[float] = []
    loop = EpochLoop(batches, seed, 1, first_epoch, lrs, lambda *a: finished.append(a))
    build_learner(model, batches, [loop], None, CPU).fit(1, lr=1e-3)
    return finished, lrs, batches


def test_a_finished_epoch_is_reported_with_its_number_cycle_and_mean_loss() -> None:
    finished, lrs, _ = fit_one_epoch(seed=3, first_epoch=0)
    ((epoch, cycle, loss, seconds),) = finished  # once, though fastai has no validation set
    assert (epoch, cycle) == (1, 1)
    assert math.isfinite(loss) and loss > 0 and seconds >= 0
    assert lrs == [1e-3] * 4  # one learning rate per step


def test_epochs_are_counted_over_the_stage_and_seed_their_batches_by_that_count() -> None:
    """A later cycle (or a resumed fold) starting after epoch 3 reports epoch 4 and
    draws epoch 4's batches, as an uninterrupted fold does."""
    finished, _, batches = fit_one_epoch(seed=3, first_epoch=3)
    assert finished[0][0] == 4
    assert batches.seed == 3 * 10_000 + 3
