"""The mixed-precision path a GPU trains with (autocast, the fp16 loss scaler,
channels_last), run on CPU: the same code, so it cannot rot where no GPU is lent."""

from pathlib import Path

import numpy as np
import pytest
import torch

from audiotag.inference.predict import LoadedModel, predict_clips
from audiotag.training.checkpoints import latest_checkpoint
from tests.helpers.training import synthetic_store, tiny_config
from tests.helpers.training import train_one as run


def _weights(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_bf16_autocast_on_cpu_trains_and_predicts(tmp_path: Path) -> None:
    config = tiny_config(**{"noisy.cycles": [{"epochs": 6, "lr": 3e-3}]})
    data, clips = synthetic_store()
    result = run(tmp_path, config, data, clips, precision="bf16")
    assert result.valid_lwlrap > 0.9  # as float32 training reaches (test_stage)
    model = LoadedModel(Path(result.model_path))
    valid = clips.subset(np.arange(32, 48))
    args = (model.model, data, valid, config.crop_frames, model.norm, model.size, config.eval)
    low, full = predict_clips(*args, precision="bf16"), predict_clips(*args, precision="fp32")
    assert np.isfinite(low).all() and np.abs(low - full).max() < 0.05
    assert not np.array_equal(low, full)  # computed in bfloat16


def test_fp16_with_its_loss_scaler_resumes_as_uninterrupted(tmp_path: Path) -> None:
    # Two fits (cycles) of one epoch each; stopped after the first.
    cycles = [{"epochs": 1, "lr": 3e-3}, {"epochs": 1, "lr": 1e-3, "size": 40}]
    config = tiny_config(**{"noisy.cycles": cycles})
    data, clips = synthetic_store()
    straight = run(tmp_path / "a", config, data, clips, precision="fp16")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", config, data, clips, stop_at=1, precision="fp16")
    _, path = latest_checkpoint(tmp_path / "b" / "checkpoints")
    scaler = torch.load(path, weights_only=True)["scaler"]
    # The scaler ran (4 steps) and backed off from 65536 after an overflow: a resume
    # that started it afresh would skip other steps.
    assert scaler["scale"] < 65536.0 and scaler["_growth_tracker"] > 0
    resumed = run(tmp_path / "b", config, data, clips, precision="fp16")
    assert resumed.resumed_from_epoch == 1
    wa, wb = _weights(straight.model_path), _weights(resumed.model_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
