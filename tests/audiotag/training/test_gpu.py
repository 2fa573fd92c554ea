"""The CUDA path: mixed precision, channels_last, augmentation on the device."""

from pathlib import Path

import numpy as np
import pytest
import torch

from audiotag.config import AugmentSettings, EvalSettings
from audiotag.inference.predict import LoadedModel
from audiotag.training.batches import augment_batch
from tests.helpers.training import stage_job, synthetic_store, tiny_config

pytestmark = pytest.mark.gpu


def test_training_on_cuda_learns_and_predicts(tmp_path: Path) -> None:
    from audiotag.training.stage import train_stage

    data, clips = synthetic_store()
    config = tiny_config(**{"noisy.cycles": [{"epochs": 4, "lr": 3e-3, "size": 48}]})
    result = train_stage(stage_job(tmp_path, config, data, clips, device="cuda:0"))
    assert result.valid_lwlrap > 0.9
    model = LoadedModel(Path(result.model_path), "cuda:0")
    probs = model.predict(data, clips.subset(np.arange(32, 48)), EvalSettings(tta=1))
    assert probs.shape == (16, 2) and np.isfinite(probs).all()


def test_augmentation_runs_on_the_device() -> None:
    x = torch.randn(8, 1, 64, 64, device="cuda")
    gen = torch.Generator(device="cuda")
    gen.manual_seed(0)
    out = augment_batch(x, AugmentSettings(), gen)
    assert out.device.type == "cuda" and out.shape == x.shape


def test_store_is_held_on_the_gpu_and_crops_cut_there() -> None:
    from audiotag.training.batches import Normalizer, TrainBatches

    data, clips = synthetic_store()
    batches = TrainBatches(
        data,
        clips,
        8,
        32,
        Normalizer(-70.0, 20.0, 60.0),
        AugmentSettings(),
        None,
        torch.device("cuda:0"),
    )
    assert batches.device_data is not None and batches.device_data.is_cuda
    x, y = next(iter(batches))
    assert x.is_cuda and x.shape == (8, 1, 32, 32) and y.is_cuda
