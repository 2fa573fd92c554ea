"""Training helpers shared by tests and their subprocess scripts: a tiny config on the
debug preset, a synthetic two-class feature store, and one fold's training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audiotag.config import TrainConfig, load_config
from audiotag.training.batches import Clips
from audiotag.training.stage import EpochRecord, StageJob, StageResult, train_stage

N_MELS, WIDTH = 32, 32


def tiny_config(**overrides) -> TrainConfig:
    """The debug preset on 32 mel bands and 32-frame crops, with a 2 + 2 epoch noisy stage."""
    base = {
        "mel.n_mels": N_MELS,
        "crop_frames": WIDTH,
        "model.widen": 0.5,
        "noisy.batch_size": 8,
        "noisy.cycles": [{"epochs": 2, "lr": 3e-3}, {"epochs": 2, "lr": 1e-3, "size": 40}],
    }
    base.update(overrides)
    return load_config("debug", base)


def synthetic_store(n: int = 48, seed: int = 0) -> tuple[np.ndarray, Clips]:
    """Two classes: a low band or a high band lit for a stretch of each clip."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(20, 90, size=n)
    offsets = np.concatenate([[0], np.cumsum(frames)[:-1]])
    data = rng.normal(-80, 3, size=(frames.sum(), N_MELS)).astype(np.float32)
    targets = np.zeros((n, 2), dtype=np.float32)
    for i, (o, f) in enumerate(zip(offsets, frames, strict=True)):
        c = i % 2
        targets[i, c] = 1
        band = slice(2, 8) if c == 0 else slice(22, 28)
        data[o : o + f, band] += 50
    return data, Clips(offsets.astype(np.int64), frames.astype(np.int64), targets)


def stage_job(
    out_dir: Path,
    config: TrainConfig,
    data: np.ndarray,
    clips: Clips,
    stage: str = "noisy",
    fold: int = 0,
    init_weights: Path | None = None,
    device: str = "cpu",
    precision: str | None = None,
) -> StageJob:
    """Clips 0-31 train, 32-47 are scored."""
    return StageJob(
        data=data,
        train=clips.subset(np.arange(32)),
        valid=clips.subset(np.arange(32, 48)),
        vocab=("low", "high"),
        config=config,
        stage=stage,
        fold=fold,
        out_dir=out_dir,
        init_weights=init_weights,
        device=device,
        precision=precision,
    )


def train_one(
    out_dir: Path,
    config: TrainConfig,
    data: np.ndarray,
    clips: Clips,
    stop_at: int | None = None,
    epochs_seen: list[int] | None = None,
    stage: str = "noisy",
    fold: int = 0,
    precision: str | None = None,
    device: str = "cpu",
) -> StageResult:
    """Trains ``stage`` of ``fold`` on one thread; ``stop_at`` interrupts after that epoch."""

    def on_epoch(rec: EpochRecord) -> None:
        if epochs_seen is not None:
            epochs_seen.append(rec.epoch)
        if stop_at is not None and rec.epoch == stop_at:
            raise KeyboardInterrupt("machine lost")

    torch.get_num_threads()  # in a new thread, keep the count set next (DevicePool.lease)
    torch.set_num_threads(1)
    job = stage_job(out_dir, config, data, clips, stage, fold, device=device, precision=precision)
    return train_stage(job, on_epoch)
