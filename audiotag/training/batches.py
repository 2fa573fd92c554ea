"""Batches from the feature store: random training crops and whole-clip windows.

Crops are gathered on the CPU from the memory-mapped store (one fancy-index
per batch), moved to the device, then clamped, normalised and augmented there
as a whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audiotag.config import AugmentSettings
from audiotag.features.logmel import clamp_top_db
from audiotag.features.store import gather_windows, gather_windows_torch, store_on_device


@dataclass(frozen=True)
class Clips:
    """Clips in a store: where they lie and their multi-hot targets."""

    offsets: np.ndarray  # (N,) int64
    frames: np.ndarray  # (N,) int64
    targets: np.ndarray  # (N, n_classes) float32

    def __len__(self) -> int:
        return len(self.offsets)

    def subset(self, idx: np.ndarray) -> Clips:
        return Clips(self.offsets[idx], self.frames[idx], self.targets[idx])


@dataclass(frozen=True)
class Normalizer:
    """Input normalisation with statistics measured on training crops."""

    mean: float
    std: float
    top_db: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, frames, n_mels)`` dB -> ``(B, 1, n_mels, frames)`` normalised image."""
        x = clamp_top_db(x, self.top_db)
        x = (x - self.mean) / self.std
        return x.transpose(1, 2).unsqueeze(1).contiguous()


def measure_normalizer(
    data: np.ndarray, clips: Clips, width: int, top_db: float, seed: int, n_crops: int = 512
) -> Normalizer:
    """Mean and std of ``n_crops`` random top_db-clamped training crops.

    fastai's ``Normalize()`` takes them from one batch; more crops make them
    steadier, and fixing them keeps evaluation independent of batch company.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clips), size=min(n_crops, max(len(clips), 1)))
    starts = random_starts(rng, clips.frames[idx], width)
    x = clamp_top_db(
        torch.from_numpy(
            gather_windows(data, clips.offsets[idx], clips.frames[idx], starts, width)
        ),
        top_db,
    )
    return Normalizer(float(x.mean()), float(x.std()) + 1e-6, top_db)


def random_starts(rng: np.random.Generator, frames: np.ndarray, width: int) -> np.ndarray:
    """A uniform crop start per clip; 0 for clips shorter than ``width``."""
    return (rng.random(len(frames)) * (np.maximum(frames - width, 0) + 1)).astype(np.int64)


def window_starts(frames: int, width: int, overlap: float) -> np.ndarray:
    """Starts of windows that cover a whole clip, the last one ending at its end."""
    if frames <= width:
        return np.zeros(1, dtype=np.int64)
    hop = max(1, round(width * (1.0 - overlap)))
    starts = np.arange(0, frames - width, hop, dtype=np.int64)
    return np.append(starts, frames - width)


def augment_draws(aug: AugmentSettings) -> int:
    """How many uniform numbers `augment_batch` uses per item."""
    return 2 * (aug.freq_masks + aug.time_masks) + 4


def window_draws(
    aug: AugmentSettings, seed: int, frames: np.ndarray, starts: np.ndarray
) -> torch.Tensor:
    """Uniform draws ``(B, augment_draws)`` that depend only on each window.

    Seeded by (seed, clip length, window start), so a clip's TTA passes are the
    same whichever clips share its batch: tagging one file gives what the
    flow's batched test pass gave.
    """
    k = augment_draws(aug)
    rows = [
        np.random.default_rng([seed, int(f), int(s)]).random(k)
        for f, s in zip(frames, starts, strict=True)
    ]
    return torch.from_numpy(np.array(rows, dtype=np.float32).reshape(len(rows), k))


def augment_batch(
    x: torch.Tensor, aug: AugmentSettings, draws: torch.Generator | torch.Tensor
) -> torch.Tensor:
    """SpecAugment masks per item and brightness/contrast per item, on x's device.

    Args:
        x: normalised ``(B, 1, n_mels, frames)``; masked cells become 0 (the mean).
        aug: the augmentation settings.
        draws: a generator to draw from, or the draws themselves,
            ``(B, augment_draws(aug))`` uniforms in [0, 1).
    """
    b, _, n_mels, n_frames = x.shape
    dev = x.device
    if isinstance(draws, torch.Generator):
        u = torch.rand(b, augment_draws(aug), generator=draws, device=draws.device)
    else:
        u = draws
    u = u.to(dev, torch.float32)
    col = iter(range(u.shape[1]))

    def rand() -> torch.Tensor:
        return u[:, next(col)]

    keep = torch.ones(b, 1, n_mels, n_frames, device=dev, dtype=x.dtype)
    for count, size, axis in ((aug.freq_masks, n_mels, 2), (aug.time_masks, n_frames, 3)):
        pos = torch.arange(size, device=dev)
        for _ in range(count):
            width = (rand() * (aug.mask_width + 1)).long().clamp(max=size)
            start = (rand() * (size - width + 1).float()).long()
            band = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])
            shape = (b, 1, size, 1) if axis == 2 else (b, 1, 1, size)
            keep = keep * (~band).view(shape).to(x.dtype)
    x = x * keep
    # Log-uniform contrast in [1 - c, 1 / (1 - c)], as fastai's Contrast.
    lo = math.log(1.0 - aug.contrast)
    scale = torch.exp(lo + rand() * (-2.0 * lo))
    on = rand() < aug.lighting_p
    x = x * torch.where(on, scale, torch.ones_like(scale)).view(b, 1, 1, 1).to(x.dtype)
    # fastai's Brightness moves pixels in logit space by logit(0.5 +- b); on a
    # normalised input the same shift is an additive offset.
    shift = torch.logit(0.5 + (rand() * 2.0 - 1.0) * aug.brightness)
    on = rand() < aug.lighting_p
    return x + torch.where(on, shift, torch.zeros_like(shift)).view(b, 1, 1, 1).to(x.dtype)


def resize_batch(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of ``(B, 1, H, W)`` to ``size x size`` (no-op for None)."""
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class TrainBatches:
    """Random crops of training clips, reshuffled every epoch; an iterable for fastai.

    Each epoch's order, crops and augmentations follow from ``set_epoch(seed)``
    alone, so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        data: np.ndarray,
        clips: Clips,
        batch_size: int,
        width: int,
        norm: Normalizer,
        aug: AugmentSettings | None,
        size: int | None,
        device: torch.device,
        n_batches: int | None = None,
    ) -> None:
        """``n_batches`` per epoch: None is one pass over the clips, the last partial
        batch dropped (fastai's default for training) unless there is no full batch;
        more draws every clip several times (see ``StageSettings.batches_per_epoch``).
        A batch is never larger than the clips: with fewer clips than ``batch_size``
        each batch holds every clip once."""
        if len(clips) == 0:
            raise ValueError("no training clips")
        batch_size = min(batch_size, len(clips))
        self.data, self.clips, self.bs, self.width = data, clips, batch_size, width
        self.norm, self.aug, self.size, self.device = norm, aug, size, device
        self.device_data = store_on_device(data, device)
        self.n_batches = n_batches or max(1, len(clips) // batch_size)
        self.seed = 0

    def set_epoch(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed)
        # Passes over the clips, each in a new order, for as many batches as asked.
        n = len(self.clips)
        passes = max(1, math.ceil(self.n_batches * self.bs / n))
        order = np.concatenate([rng.permutation(n) for _ in range(passes)])
        pin = self.device.type == "cuda"
        for i in range(self.n_batches):
            idx = order[i * self.bs : (i + 1) * self.bs]
            c = self.clips.subset(idx)
            starts = random_starts(rng, c.frames, self.width)
            y = torch.from_numpy(c.targets)
            if self.device_data is not None:
                x = gather_windows_torch(
                    self.device_data,
                    *(torch.from_numpy(a).to(self.device) for a in (c.offsets, c.frames, starts)),
                    self.width,
                )
            else:
                x = torch.from_numpy(
                    gather_windows(self.data, c.offsets, c.frames, starts, self.width)
                )
                if pin:
                    x = x.pin_memory()
            if pin:
                y = y.pin_memory()
            x = self.norm(x.to(self.device, non_blocking=True))
            if self.aug is not None:
                x = augment_batch(x, self.aug, gen)
            yield resize_batch(x, self.size), y.to(self.device, non_blocking=True)
