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


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_resumes_with_its_scaler_and_predicts(
    tmp_path: Path, precision: str
) -> None:
    """What only a GPU can break: cuDNN's bf16/fp16 kernels, the CUDA loss scaler, pinned
    and non-blocking copies. Kernels are not bitwise deterministic there, so the resumed
    weights are compared within a tolerance; the scaler's state must match exactly."""
    from audiotag.training.checkpoints import latest_checkpoint
    from tests.helpers.training import train_one

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    data, clips = synthetic_store()
    cycles = [{"epochs": 1, "lr": 3e-3}, {"epochs": 1, "lr": 1e-3, "size": 40}]
    config = tiny_config(**{"noisy.cycles": cycles})

    def run(out: Path, stop_at: int | None = None):  # noqa: ANN202
        return train_one(out, config, data, clips, stop_at, precision=precision, device="cuda:0")

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=1)
    _, path = latest_checkpoint(tmp_path / "b" / "checkpoints")
    scaler = torch.load(path, weights_only=True)["scaler"]
    assert (scaler == {}) == (precision == "bf16")
    resumed = run(tmp_path / "b")
    wa = torch.load(straight.model_path, weights_only=True)["state_dict"]
    wb = torch.load(resumed.model_path, weights_only=True)["state_dict"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-3) for k in wa)
    model = LoadedModel(Path(resumed.model_path), "cuda:0")
    probs = model.predict(data, clips.subset(np.arange(32, 48)), EvalSettings(tta=1))
    assert probs.shape == (16, 2) and np.isfinite(probs).all()


def test_a_lease_sets_the_folds_gpu_as_current() -> None:
    from audiotag.devices import DevicePool

    n = torch.cuda.device_count()
    pool = DevicePool([f"cuda:{n - 1}"])
    with pool.lease() as device:
        assert device == f"cuda:{n - 1}" and torch.cuda.current_device() == n - 1
