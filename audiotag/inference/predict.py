"""Whole-clip prediction: windows that cover each clip, pooled per clip, optional TTA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiotag.config import AugmentSettings, EvalSettings, TrainConfig
from audiotag.devices import autocast_on, flush_denormals
from audiotag.features.store import gather_windows, gather_windows_torch
from audiotag.training.batches import (
    Clips,
    Normalizer,
    augment_batch,
    resize_batch,
    window_draws,
    window_starts,
)
from audiotag.training.models import build_model

MODEL_FORMAT = 1
# Windows per forward pass (CPU, GPU): no gradient is kept, so a GPU takes large
# batches (256 windows at 256 px in bf16 is a few GB); on CPU larger gains nothing.
PREDICT_BATCH = (64, 256)


def pool_windows(probs: np.ndarray, owner: np.ndarray, n_clips: int, how: str) -> np.ndarray:
    """Window probabilities ``(W, C)`` -> clip probabilities ``(n_clips, C)``."""
    if how == "max":
        out = np.full((n_clips, probs.shape[1]), -np.inf)
        np.maximum.at(out, owner, probs)
        return out
    counts = np.bincount(owner, minlength=n_clips)[:, None]
    if how == "gmean":
        logs = np.zeros((n_clips, probs.shape[1]))
        np.add.at(logs, owner, np.log(np.clip(probs, 1e-7, 1.0)))
        return np.exp(logs / counts)
    if how != "mean":
        raise ValueError(f"unknown pooling {how!r}; choose mean, max or gmean")
    sums = np.zeros((n_clips, probs.shape[1]))
    np.add.at(sums, owner, probs)
    return sums / counts


@torch.no_grad()
def predict_window_passes(
    model: nn.Module,
    data: np.ndarray,
    clips: Clips,
    width: int,
    norm: Normalizer,
    size: int | None,
    ev: EvalSettings,
    aug: AugmentSettings | None = None,
    tta: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    seed: int = 0,
    precision: str | None = None,
    device_data: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Probabilities of the windows that cover every clip, per pass.

    Args:
        batch_size: windows per forward pass; None: `PREDICT_BATCH` for the device.
        precision: as `audiotag.devices.device_precision` (None: the device's own,
            bf16 or fp16 autocast on a GPU, fp32 on CPU).
        device_data: ``data`` already on ``device`` (`store_on_device`, as training
            holds it): windows are then cut there, and nothing but indices is copied.

    Returns:
        ``(owner, starts, passes)``: each window's clip ``(W,)`` and first frame ``(W,)``,
        and ``1 + tta`` arrays ``(W, n_classes)``: the clean pass, then the augmented ones
        (drawn from ``seed`` and each window alone, so whichever clips share a batch).
    """
    flush_denormals()
    device = torch.device(device)
    batch_size = batch_size or PREDICT_BATCH[device.type == "cuda"]
    starts_per_clip = [window_starts(int(f), width, ev.window_overlap) for f in clips.frames]
    owner = np.repeat(np.arange(len(clips)), [len(s) for s in starts_per_clip])
    starts = np.concatenate(starts_per_clip) if len(clips) else np.zeros(0, dtype=np.int64)
    offsets, frames = clips.offsets[owner], clips.frames[owner]
    was_training = model.training
    model.eval()
    passes = []
    for p in range(1 + tta):
        probs = []
        for lo in range(0, len(starts), batch_size):
            sl = slice(lo, lo + batch_size)
            if device_data is not None:
                idx = (torch.from_numpy(a[sl]).to(device) for a in (offsets, frames, starts))
                x = gather_windows_torch(device_data, *idx, width)
            else:
                x = torch.from_numpy(
                    gather_windows(data, offsets[sl], frames[sl], starts[sl], width)
                )
            x = norm(x.to(device))
            if p > 0 and aug is not None:
                draws = window_draws(aug, seed * 1000 + p, frames[sl], starts[sl])
                x = augment_batch(x, aug, draws)
            x = resize_batch(x, size)
            with autocast_on(device, precision):
                logits = model(x)
            # Kept on the device: one copy at the end, no wait for the GPU per batch.
            probs.append(torch.sigmoid(logits.float()))
        passes.append(
            torch.cat(probs).cpu().numpy() if probs else np.zeros((0, clips.targets.shape[1]))
        )
    model.train(was_training)
    return owner, starts, passes


def predict_clips(
    model: nn.Module,
    data: np.ndarray,
    clips: Clips,
    width: int,
    norm: Normalizer,
    size: int | None,
    ev: EvalSettings,
    **options: Any,
) -> np.ndarray:
    """Clip probabilities ``(N, n_classes)`` from windows covering every clip.

    Deterministic: no random crop or mask in the clean pass; the ``tta``
    augmented passes draw from a generator seeded with ``seed``. Each pass's windows
    are pooled per clip (``ev.pooling``), and the passes' clip probabilities averaged.
    ``options``: `predict_window_passes`' keyword arguments (``aug``, ``tta``,
    ``device``, ``batch_size``, ``seed``, ``precision``, ``device_data``).
    """
    owner, _, passes = predict_window_passes(model, data, clips, width, norm, size, ev, **options)
    return np.mean([pool_windows(w, owner, len(clips), ev.pooling) for w in passes], axis=0)


def save_model(
    path: Path,
    model: nn.Module,
    vocab: tuple[str, ...],
    config: TrainConfig,
    norm: Normalizer,
    size: int | None,
    stage: str,
    fold: int,
) -> None:
    """A model file that alone is enough to predict (loads with ``weights_only=True``)."""
    from audiotag.storage import write_atomic

    payload = {
        "format": MODEL_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "vocab": list(vocab),
        "config": config.model_dump_json(),
        "norm": {"mean": norm.mean, "std": norm.std, "top_db": norm.top_db},
        "size": size,
        "stage": stage,
        "fold": fold,
    }
    write_atomic(path, lambda tmp: _save_torch(payload, tmp))


def _save_torch(payload: dict, path: Path) -> None:
    # Through a file object: given a path, torch.save names the archive inside after
    # the (temporary, random) file name, and equal models would get unequal bytes.
    with path.open("wb") as f:
        torch.save(payload, f)


class LoadedModel:
    """A model file, loaded: the network, its vocabulary and feature settings."""

    def __init__(self, path: Path, device: torch.device | str = "cpu") -> None:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path}: not an audiotag model file (format {payload.get('format')})")
        self.path = Path(path)
        self.config = TrainConfig.model_validate_json(payload["config"])
        self.vocab: tuple[str, ...] = tuple(payload["vocab"])
        self.norm = Normalizer(**payload["norm"])
        self.size: int | None = payload["size"]
        self.stage, self.fold = payload["stage"], payload["fold"]
        self.device = torch.device(device)
        self.model = build_model(self.config.model, len(self.vocab))
        self.model.load_state_dict(payload["state_dict"])
        self.model.to(self.device).eval()

    def predict(
        self, data: np.ndarray, clips: Clips, ev: EvalSettings | None = None, seed: int = 0
    ) -> np.ndarray:
        """Clip probabilities with ``ev``'s windows, pooling and TTA passes.

        Args:
            ev: evaluation settings; None uses those of the run that trained the model.
                A fold model found in the cache may come from a run with other test-time
                settings, so the ensemble passes its own.
        """
        ev = self.config.eval if ev is None else ev
        owner, _, passes = self.predict_windows(data, clips, ev, seed)
        return np.mean([pool_windows(w, owner, len(clips), ev.pooling) for w in passes], axis=0)

    def predict_windows(
        self, data: np.ndarray, clips: Clips, ev: EvalSettings | None = None, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """`predict_window_passes` with ``ev``'s settings (as `predict`, before pooling)."""
        cfg = self.config
        ev = cfg.eval if ev is None else ev
        return predict_window_passes(
            self.model,
            data,
            clips,
            cfg.crop_frames,
            self.norm,
            self.size,
            ev,
            aug=cfg.augment,
            tta=ev.tta,
            device=self.device,
            seed=seed,
        )


def ensemble(probs: list[np.ndarray], how: str = "mean") -> np.ndarray:
    """Averages fold models' probabilities (arithmetic or geometric)."""
    stack = np.stack(probs)
    if how == "gmean":
        return np.exp(np.log(np.clip(stack, 1e-7, 1.0)).mean(axis=0))
    if how != "mean":
        raise ValueError(f"unknown ensemble {how!r}; choose mean or gmean")
    return stack.mean(axis=0)
