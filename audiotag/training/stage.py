"""Training one stage of one fold with fastai, resumable from per-epoch checkpoints.

The pieces: ``learner`` builds the fastai Learner, ``loop`` is its epoch callback,
``checkpoints`` writes and restores epochs; this module puts them together.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from fastai.callback.schedule import ParamScheduler, combined_cos
from fastai.learner import Learner
from torch import nn

from audiotag.config import StageSettings, TrainConfig
from audiotag.devices import flush_denormals
from audiotag.errors import UsageError
from audiotag.inference.predict import predict_clips, save_model
from audiotag.metrics import chance_lwlrap, lwlrap
from audiotag.stopping import StopRequested, check_stop
from audiotag.storage import exclusive
from audiotag.training.batches import Clips, Normalizer, TrainBatches, measure_normalizer
from audiotag.training.checkpoints import Checkpointer, Resumed
from audiotag.training.learner import GLOBAL_RNG, amp_callback, build_learner
from audiotag.training.loop import EpochLoop
from audiotag.training.losses import stage_loss
from audiotag.training.models import build_model
from audiotag.training.progress import EpochBar


@dataclass(frozen=True)
class EpochRecord:
    """What one finished epoch measured (sent to ``on_epoch``, logged by the caller)."""

    stage: str
    fold: int
    epoch: int  # 1-based, counted over the whole stage
    epochs: int
    cycle: int
    lr: float
    train_loss: float
    valid_loss: float
    valid_lwlrap: float
    seconds: float


@dataclass(frozen=True)
class StageResult:
    """A trained stage of one fold: small and picklable, passed between tasks."""

    stage: str
    fold: int
    model_path: str
    valid_lwlrap: float
    valid_loss: float
    history: tuple[dict, ...] = field(default_factory=tuple)
    resumed_from_epoch: int = 0
    lrs: tuple[float, ...] = field(default_factory=tuple)  # the learning rate of every step
    chance_lwlrap: float = math.nan  # what random scores reach on the same held-out clips

    def learned(self, margin: float) -> bool:
        """Whether the fold scored more than ``margin`` above chance on its held-out clips."""
        if math.isnan(self.chance_lwlrap) or math.isnan(self.valid_lwlrap):
            return True  # nothing to judge by: take it as learned
        return self.valid_lwlrap >= self.chance_lwlrap + margin


@dataclass(frozen=True)
class StageJob:
    """One stage of one fold: what it trains on, how, and where it writes.

    Attributes:
        data: the feature store's array, ``(frames, n_mels)``.
        train, valid: clips to train on and to score (whole clips).
        vocab: label vocabulary (the targets' columns).
        config: the run's configuration; ``stage`` names one of its stages.
        fold: fold index (0-based).
        out_dir: where checkpoints, ``model.pt`` and ``valid_probs.npy`` go.
        init_weights: a model file to start from (an earlier stage's fold), or None.
        device: ``cpu`` or ``cuda:N``.
        from_scratch: whether the stage gets the from-scratch step floor
            (``scratch_min_steps``); None: when it has no initial weights. A stage whose
            initial weights learned nothing is given it too (``steps.training``).
        precision: ``fp32``, ``bf16`` or ``fp16`` for training and its validation; None
            is the device's own (`audiotag.devices.device_precision`).
    """

    data: np.ndarray
    train: Clips
    valid: Clips
    vocab: tuple[str, ...]
    config: TrainConfig
    stage: str
    fold: int
    out_dir: Path
    init_weights: Path | None = None
    device: str = "cpu"
    from_scratch: bool | None = None
    precision: str | None = None

    @property
    def settings(self) -> StageSettings:
        return self.config.stage(self.stage)

    @property
    def name(self) -> str:
        return f"{self.stage} fold {self.fold + 1}"


def stage_seed(config: TrainConfig, stage: str, fold: int) -> int:
    digest = hashlib.sha256(f"{config.seed}/{stage}/{fold}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _from_scratch(job: StageJob) -> bool:
    return job.init_weights is None if job.from_scratch is None else job.from_scratch


def _bce(targets: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))


@dataclass
class _Fold:
    """A fold's state while it trains: its model, batches and what it measured."""

    job: StageJob
    device: torch.device
    seed: int
    model: nn.Module
    norm: Normalizer
    batches: TrainBatches
    checkpoints: Checkpointer
    history: list[dict] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    learn: Learner | None = None
    size: int | None = None
    # The last epoch's scores, when this process validated it: the stage's result.
    final: tuple[float, float, np.ndarray] | None = None


class InitWeightsError(RuntimeError, UsageError):
    """The earlier stage's model file a fold starts from does not load."""


def _load_init_weights(model: nn.Module, path: Path, what: str) -> None:
    """Loads an earlier stage's model file into ``model``.

    Raises:
        InitWeightsError: it does not load; it is moved aside to ``model.pt.corrupt``, so
            that a re-run trains that earlier fold again (its cached result is not trusted
            without its model file) instead of failing on the same file for good.
    """
    if not path.exists():
        raise InitWeightsError(
            f"{what}: its initial weights {path} are missing. Re-run: the fold they come "
            "from trains again, then this one"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["state_dict"])
    except Exception as err:  # noqa: BLE001 - any failure to load is the file's
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        cause = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InitWeightsError(
            f"{what}: its initial weights {path} do not load ({cause}); moved aside to "
            f"{aside.name}. Re-run: the fold they came from trains again, then this one"
        ) from err


def _prepare(job: StageJob) -> _Fold:
    """The initial model (seeded, or an earlier stage's weights), normaliser and batches."""
    device = torch.device(job.device)
    seed = stage_seed(job.config, job.stage, job.fold)
    with GLOBAL_RNG:
        torch.manual_seed(seed)
        model = build_model(job.config.model, len(job.vocab))
    if job.init_weights is not None:
        _load_init_weights(model, job.init_weights, job.name)
    model.to(device)
    cfg, settings = job.config, job.settings
    norm = measure_normalizer(job.data, job.train, cfg.crop_frames, cfg.mel.top_db, seed)
    batches = TrainBatches(
        job.data,
        job.train,
        settings.batch_size,
        cfg.crop_frames,
        norm,
        cfg.augment,
        None,
        device,
        settings.batches_per_epoch(len(job.train), from_scratch=_from_scratch(job)),
    )
    checkpoints = Checkpointer(job.out_dir / "checkpoints", job.name)
    return _Fold(job, device, seed, model, norm, batches, checkpoints)


def _evaluate(f: _Fold) -> tuple[float, float, np.ndarray]:
    """(lwlrap, BCE, probabilities) of the held-out clips, whole clips, every window."""
    job = f.job
    probs = predict_clips(
        f.model,
        job.data,
        job.valid,
        job.config.crop_frames,
        f.norm,
        f.size,
        job.config.eval,
        device=f.device,
        precision=job.precision,
        device_data=f.batches.device_data,
    )
    score = lwlrap(job.valid.targets, probs) if job.valid.targets.any() else math.nan
    return score, _bce(job.valid.targets, probs), probs


def _finish_epoch(
    f: _Fold,
    on_epoch: Callable[[EpochRecord], None] | None,
    epoch: int,
    cycle: int,
    train_loss: float,
    seconds: float,
) -> None:
    """Scores the epoch when it is due, checkpoints it, and reports it."""
    every, last = f.job.settings.valid_every, f.job.settings.epochs
    if epoch % every == 0 or epoch == last:
        score, vloss, probs = _evaluate(f)
        f.final = (score, vloss, probs) if epoch == last else None
    else:
        score = vloss = math.nan
    rec = EpochRecord(
        f.job.stage,
        f.job.fold,
        epoch,
        last,
        cycle,
        f.lrs[-1] if f.lrs else math.nan,
        train_loss,
        vloss,
        score,
        seconds,
    )
    f.history.append(asdict(rec))
    assert f.learn is not None
    amp = amp_callback(f.learn)
    scaler = amp.grad_scaler.state_dict() if amp is not None else None
    f.checkpoints.save(epoch, f.model, f.learn.opt.state_dict(), f.history, f.lrs, scaler)
    if on_epoch is not None:
        on_epoch(rec)


def _fit_cycles(f: _Fold, resumed: Resumed, on_epoch: Callable[[EpochRecord], None] | None) -> None:
    """Fits every flat-then-cosine cycle not finished yet, from epoch ``resumed.epoch``."""
    settings, done, first = f.job.settings, resumed.epoch, 0
    for c, cycle in enumerate(settings.cycles):
        last = first + cycle.epochs
        f.size = cycle.size
        if done >= last:
            first = last
            continue
        f.batches.size = cycle.size
        loop = EpochLoop(
            f.batches, f.seed, c, first, f.lrs, lambda *a: _finish_epoch(f, on_epoch, *a)
        )
        if f.learn is None:
            alpha = f.job.config.augment.mixup_alpha if settings.mixup else None
            f.learn = build_learner(
                f.model,
                f.batches,
                [loop],
                alpha,
                f.device,
                stage_loss(settings),
                f.job.precision,
            )
            f.learn.create_opt()
            if resumed.opt_state is not None:
                f.learn.opt.load_state_dict(resumed.opt_state)
            amp = amp_callback(f.learn)
            if amp is not None and resumed.scaler_state:
                amp.grad_scaler.load_state_dict(resumed.scaler_state)
        else:
            f.learn.remove_cbs([cb for cb in f.learn.cbs if isinstance(cb, EpochLoop)])
            f.learn.add_cb(loop)
        lr = np.array([cycle.lr] * len(f.learn.opt.param_lists))
        # fit_flat_cos ignores start_epoch (fastai 2.8.12); fit honours it and the
        # scheduler reads the position from the epoch, so the lr curve matches.
        sched = {"lr": combined_cos(settings.pct_start, lr, lr, lr / 1e5)}
        bar = EpochBar(f.job.name, first, settings.epochs)  # on a terminal only
        f.learn.fit(
            cycle.epochs, cbs=[ParamScheduler(sched), bar], start_epoch=max(0, done - first)
        )
        first = last


def _save_result(f: _Fold, resumed_from: int) -> StageResult:
    """Writes ``model.pt`` and the held-out probabilities; drops the checkpoints."""
    job = f.job
    score, vloss, probs = f.final or _evaluate(f)
    model_path = job.out_dir / "model.pt"
    save_model(model_path, f.model, job.vocab, job.config, f.norm, f.size, job.stage, job.fold)
    np.save(job.out_dir / "valid_probs.npy", probs)
    # The model file is the stage's result; its checkpoints only served resuming.
    f.checkpoints.clear()
    return StageResult(
        job.stage,
        job.fold,
        str(model_path),
        score,
        vloss,
        tuple(f.history),
        resumed_from_epoch=resumed_from,
        lrs=tuple(f.lrs),
        chance_lwlrap=chance_lwlrap(job.valid.targets) if job.valid.targets.any() else math.nan,
    )


def train_stage(
    job: StageJob, on_epoch: Callable[[EpochRecord], None] | None = None
) -> StageResult:
    """Trains one stage of one fold; continues from its last finished epoch if any.

    Args:
        job: what to train and where to write it.
        on_epoch: called after each finished epoch.

    Raises:
        BusyError: another process trains this fold in the same folder.
        CheckpointError: a checkpoint could not be written.
        StopRequested: a stop was asked for (Ctrl-C); the fold stopped before its next
            batch, its last finished epoch's checkpoint kept.
    """
    flush_denormals()
    with exclusive(job.out_dir, job.name):
        check_stop(job.name)
        f = _prepare(job)
        resumed = f.checkpoints.restore(f.model)
        f.history, f.lrs = resumed.history, resumed.lrs
        try:
            _fit_cycles(f, resumed, on_epoch)
        except StopRequested:
            done = len(f.history)
            kept = f"its checkpoint of epoch {done} is kept" if done else "no epoch had finished"
            raise StopRequested(
                f"{job.name}: stopped on request in epoch {done + 1} of "
                f"{job.settings.epochs}; {kept}"
            ) from None
        return _save_result(f, resumed.epoch)
