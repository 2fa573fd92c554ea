"""audiotag/training/progress.py: the epoch bars inside a real fastai fit, and the table."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from audiotag.training.batches import TrainBatches, measure_normalizer
from audiotag.training.learner import build_learner
from audiotag.training.progress import PROGRESS_ENV, EpochBar, bars_wanted, format_history
from tests.helpers.training import N_MELS, WIDTH, synthetic_store

CPU = torch.device("cpu")


class Terminal(io.StringIO):
    """What the bars write, as a terminal would receive it."""

    def isatty(self) -> bool:
        return True


def fit_with_bar(stream: io.StringIO, epochs: int = 2) -> EpochBar:
    """A linear net fitted for ``epochs`` epochs of 4 batches under an ``EpochBar``."""
    data, clips = synthetic_store(n=32)
    norm = measure_normalizer(data, clips, WIDTH, 60.0, 0)
    batches = TrainBatches(data, clips, 8, WIDTH, norm, None, None, CPU)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(N_MELS * WIDTH, 2))
    bar = EpochBar("noisy fold 2", first_epoch=3, epochs=3 + epochs, stream=stream, refresh=0)
    build_learner(model, batches, [], None, CPU).fit(epochs, lr=1e-3, cbs=[bar])
    return bar


def test_a_terminal_gets_a_bar_per_epoch_with_batches_rate_and_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    out = Terminal()
    bar = fit_with_bar(out)
    text = out.getvalue()
    # Counted over the whole stage (3 epochs came before this fit), every batch shown.
    assert "noisy fold 2 epoch 4/5" in text and "noisy fold 2 epoch 5/5" in text
    assert "4/4 [" in text and "batch/s" in text and "<" in text  # elapsed<left, rate
    assert bar.bar is None  # closed: the epoch's logged line takes its place


def test_no_bar_off_a_terminal_or_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    log = io.StringIO()  # a log file, a worker's output, a captured stderr
    assert not bars_wanted(log)
    fit_with_bar(log, epochs=1)
    assert log.getvalue() == ""
    monkeypatch.setenv(PROGRESS_ENV, "0")  # the CLI's --quiet
    assert not bars_wanted(Terminal())


def test_the_end_of_stage_table_has_a_row_per_epoch_and_dashes_where_unscored() -> None:
    history = [
        {
            "epoch": 1,
            "train_loss": 0.71234,
            "valid_loss": math.nan,
            "valid_lwlrap": math.nan,
            "seconds": 4.2,
        },
        {
            "epoch": 2,
            "train_loss": 0.5,
            "valid_loss": 0.61,
            "valid_lwlrap": 0.4321,
            "seconds": 75.0,
        },
    ]
    lines = format_history(history).splitlines()
    assert lines[0].split() == ["epoch", "train/loss", "valid/loss", "lwlrap", "time"]
    assert lines[1].split() == ["1", "0.7123", "-", "-", "00:04"]
    assert lines[2].split() == ["2", "0.5000", "0.6100", "0.4321", "01:15"]
    assert format_history([]).split() == ["epoch", "train/loss", "valid/loss", "lwlrap", "time"]
