"""audiotag/training/checkpoints.py: one checkpoint per fold, the newest, and everything a
resumed fold needs from it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiotag.training.checkpoints import Checkpointer, latest_checkpoint


def linear(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 2)


def test_saving_an_epoch_keeps_only_the_newest_checkpoint(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoints", "noisy fold 1")
    for epoch in (1, 2, 3):
        ckpt.save(epoch, linear(epoch), {}, [{"epoch": epoch}], [0.1] * epoch)
    assert [p.name for p in ckpt.directory.iterdir()] == ["epoch-0003.pt"]
    assert latest_checkpoint(ckpt.directory) == (3, ckpt.directory / "epoch-0003.pt")


def test_restore_gives_back_the_epoch_history_learning_rates_and_weights(tmp_path: Path) -> None:
    model = linear(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(3, 4)).sum().backward()
    opt.step()
    history = [{"epoch": 1, "train_loss": 0.7, "valid_lwlrap": math.nan}, {"epoch": 2}]
    lrs = [3e-3, 2.5e-3, 1e-3]
    # fastai hands numpy scalars in its optimiser state: they load back as plain numbers.
    state = {"state": opt.state_dict()["state"], "hypers": [{"lr": np.float64(1e-3)}]}
    ckpt = Checkpointer(tmp_path, "curated fold 2")
    ckpt.save(2, model, state, history, lrs)

    fresh = linear(1)
    resumed = Checkpointer(tmp_path, "curated fold 2").restore(fresh)
    assert resumed.epoch == 2 and resumed.lrs == lrs
    assert resumed.history[1] == {"epoch": 2} and math.isnan(resumed.history[0]["valid_lwlrap"])
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert resumed.opt_state is not None
    assert resumed.opt_state["hypers"] == [{"lr": 1e-3}]
    step = resumed.opt_state["state"][0]["exp_avg"]
    assert torch.equal(step, opt.state_dict()["state"][0]["exp_avg"])


def test_a_fold_without_checkpoints_restores_as_epoch_zero_and_keeps_its_weights(
    tmp_path: Path,
) -> None:
    model = linear(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resumed = Checkpointer(tmp_path / "never-written", "noisy fold 1").restore(model)
    assert (resumed.epoch, resumed.history, resumed.lrs, resumed.opt_state) == (0, [], [], None)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_corrupt_checkpoint_is_named_moved_aside_and_the_one_before_restored(
    tmp_path: Path, caplog
) -> None:
    ckpt = Checkpointer(tmp_path, "noisy fold 3")
    ckpt.save(1, linear(1), {}, [{"epoch": 1}], [0.1])
    older = tmp_path / "epoch-0001.pt"
    kept = older.read_bytes()
    ckpt.save(2, linear(2), {}, [{"epoch": 1}, {"epoch": 2}], [0.1, 0.1])
    older.write_bytes(kept)  # as if pruning had not finished
    newest = tmp_path / "epoch-0002.pt"
    _truncate(newest)
    model = linear(9)
    with caplog.at_level("WARNING", logger="audiotag"):
        resumed = ckpt.restore(model)
    assert resumed.epoch == 1 and resumed.history == [{"epoch": 1}]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in linear(1).state_dict().items())
    assert (tmp_path / "epoch-0002.pt.corrupt").exists() and not newest.exists()
    line = caplog.records[0].getMessage()
    assert "noisy fold 3" in line and str(newest) in line and "from epoch 1" in line


def test_a_fold_whose_only_checkpoint_is_corrupt_starts_from_scratch(
    tmp_path: Path, caplog
) -> None:
    ckpt = Checkpointer(tmp_path / "checkpoints", "curated fold 1")
    ckpt.save(4, linear(4), {}, [], [])
    _truncate(ckpt.directory / "epoch-0004.pt")
    model = linear(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level("WARNING", logger="audiotag"):
        assert ckpt.restore(model).epoch == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert "from scratch" in caplog.text
    ckpt.clear()  # the fold's model is written: the checkpoints go, the corrupt file stays
    assert [p.name for p in ckpt.directory.iterdir()] == ["epoch-0004.pt.corrupt"]
