"""Training one stage of one fold with fastai, resumable from per-epoch checkpoints.

The fastai ``Learner`` is built here and nowhere else.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback, CancelValidException
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import ParamScheduler, combined_cos
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat
from fastai.optimizer import ranger
from fastcore.foundation import L
from torch import nn

from audiotag.config import Stage, TrainConfig
from audiotag.devices import flush_denormals
from audiotag.inference.predict import predict_clips, save_model
from audiotag.metrics import lwlrap
from audiotag.storage import exclusive, write_atomic
from audiotag.training.batches import Clips, TrainBatches, measure_normalizer
from audiotag.training.models import build_model

CHECKPOINT_RE = re.compile(r"epoch-(\d+)\.pt$")


class CheckpointError(OSError):
    """A checkpoint could not be written (disk full, say); the previous one is intact."""


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


def stage_seed(config: TrainConfig, stage: str, fold: int) -> int:
    digest = hashlib.sha256(f"{config.seed}/{stage}/{fold}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _plain(obj: Any) -> Any:
    """fastai containers -> builtins, so a checkpoint loads with ``weights_only=True``."""
    if isinstance(obj, L | list | tuple):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _bce(targets: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))


def latest_checkpoint(ckpt_dir: Path) -> tuple[int, Path] | None:
    found = [
        (int(m.group(1)), p)
        for p in ckpt_dir.glob("epoch-*.pt")
        if (m := CHECKPOINT_RE.search(p.name))
    ]
    return max(found) if found else None


# torch's global generator is shared by every thread of the process, and folds train in
# threads at once (one per GPU, a few on CPU): what draws from it does so under this lock
# (initial weights), and everything else draws from the fold's own generators.
_GLOBAL_RNG = threading.Lock()


class SeededMixUp(MixUp):
    """fastai's MixUp with its Beta draws and pairings from its own generator.

    fastai's draws from torch's global generator, which folds training at once in
    one process would share, so a fold's result would depend on its neighbours'.
    ``rng`` is reseeded every epoch (``_EpochLoop``), so a resumed fold draws alike.
    """

    def __init__(self, alpha: float) -> None:
        super().__init__(alpha)
        self.alpha = alpha
        self.rng = np.random.default_rng(0)

    def before_batch(self) -> None:
        n = self.y.size(0)
        lam = torch.from_numpy(self.rng.beta(self.alpha, self.alpha, n).astype(np.float32))
        self.lam = torch.maximum(lam, 1 - lam).to(self.x.device)
        shuffle = torch.from_numpy(self.rng.permutation(n)).to(self.x.device)
        xb1, self.yb1 = tuple(L(self.xb).itemgot(shuffle)), tuple(L(self.yb).itemgot(shuffle))
        weight = self.lam.view(-1, *[1] * (self.x.dim() - 1))
        self.learn.xb = tuple(L(xb1, self.xb).map_zip(torch.lerp, weight=weight))
        if not self.stack_y:
            weight = self.lam.view(-1, *[1] * (self.y.dim() - 1))
            self.learn.yb = tuple(L(self.yb1, self.yb).map_zip(torch.lerp, weight=weight))


def build_learner(
    model: nn.Module,
    batches: TrainBatches,
    cbs: Sequence[Callback],
    mixup_alpha: float | None,
    device: torch.device,
) -> Learner:
    """The one place a fastai Learner is made: BCE with logits, Ranger, optional Mixup."""
    all_cbs = list(cbs) + ([SeededMixUp(mixup_alpha)] if mixup_alpha else [])
    learn = Learner(
        DataLoaders(batches, []),
        model,
        loss_func=BCEWithLogitsLossFlat(),
        opt_func=ranger,
        cbs=all_cbs,
    )
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = lambda *_: None
    if device.type == "cuda":
        import fastai.callback.channelslast  # noqa: F401  (adds Learner.to_channelslast)
        from fastai.callback.fp16 import AMPMode

        mode = AMPMode.BF16 if torch.cuda.is_bf16_supported() else AMPMode.FP16
        learn.to_channelslast(amp_mode=mode)
    return learn


class _EpochLoop(Callback):
    """Seeds each epoch, replaces fastai's validation with whole-clip scoring, checkpoints."""

    order = 80  # after fastai's SkipToEpoch, so skipped epochs never reach before_epoch

    def __init__(self, run: _StageRun, cycle: int, first_epoch: int) -> None:
        self.run, self.cycle, self.first_epoch = run, cycle, first_epoch
        self.active = False

    def before_epoch(self) -> None:
        self.active = True
        self.t0 = time.perf_counter()
        self.losses: list[float] = []
        seed = self.run.seed * 10_000 + self.first_epoch + self.epoch
        self.run.batches.set_epoch(seed)
        for cb in self.learn.cbs:
            if isinstance(cb, SeededMixUp):
                cb.rng = np.random.default_rng([seed, 1])

    def after_batch(self) -> None:
        if self.training:
            self.losses.append(float(self.learn.loss.detach()))
            self.run.lrs.append(float(self.learn.opt.hypers[-1]["lr"]))

    def before_validate(self) -> None:
        raise CancelValidException

    def after_epoch(self) -> None:
        if not self.active:
            return
        self.active = False
        self.run.finish_epoch(
            self.first_epoch + self.epoch + 1,
            self.cycle,
            float(np.mean(self.losses)) if self.losses else math.nan,
            time.perf_counter() - self.t0,
        )


class _StageRun:
    def __init__(
        self,
        *,
        data: np.ndarray,
        train: Clips,
        valid: Clips,
        vocab: tuple[str, ...],
        config: TrainConfig,
        stage: Stage,
        fold: int,
        out_dir: Path,
        init_weights: Path | None,
        device: torch.device,
        on_epoch: Callable[[EpochRecord], None] | None,
    ) -> None:
        self.data, self.train, self.valid, self.vocab = data, train, valid, vocab
        self.config, self.stage, self.fold, self.out_dir = config, stage, fold, out_dir
        self.settings = config.stage(stage)
        self.device, self.on_epoch = device, on_epoch
        self.seed = stage_seed(config, stage, fold)
        self.ckpt_dir = out_dir / "checkpoints"
        self.history: list[dict] = []
        self.lrs: list[float] = []
        with _GLOBAL_RNG:
            torch.manual_seed(self.seed)
            self.model = build_model(config.model, len(vocab))
        if init_weights is not None:
            payload = torch.load(init_weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(payload["state_dict"])
        self.model.to(device)
        self.norm = measure_normalizer(
            data, train, config.crop_frames, config.mel.top_db, self.seed
        )
        self.batches = TrainBatches(
            data,
            train,
            self.settings.batch_size,
            config.crop_frames,
            self.norm,
            config.augment,
            None,
            device,
            self.settings.batches_per_epoch(len(train), from_scratch=init_weights is None),
        )
        self.learn: Learner | None = None
        self.size: int | None = None
        # The last epoch's scores, when this process validated it: the stage's result.
        self.final: tuple[float, float, np.ndarray] | None = None

    def evaluate(self) -> tuple[float, float, np.ndarray]:
        probs = predict_clips(
            self.model,
            self.data,
            self.valid,
            self.config.crop_frames,
            self.norm,
            self.size,
            self.config.eval,
            device=self.device,
        )
        score = lwlrap(self.valid.targets, probs) if self.valid.targets.any() else math.nan
        return score, _bce(self.valid.targets, probs), probs

    def finish_epoch(self, epoch: int, cycle: int, train_loss: float, seconds: float) -> None:
        every, last = self.settings.valid_every, self.settings.epochs
        if epoch % every == 0 or epoch == last:
            score, vloss, probs = self.evaluate()
            self.final = (score, vloss, probs) if epoch == last else None
        else:
            score = vloss = math.nan
        rec = EpochRecord(
            self.stage,
            self.fold,
            epoch,
            self.settings.epochs,
            cycle,
            self.lrs[-1] if self.lrs else math.nan,
            train_loss,
            vloss,
            score,
            seconds,
        )
        self.history.append(asdict(rec))
        self.save_checkpoint(epoch)
        if self.on_epoch is not None:
            self.on_epoch(rec)

    def save_checkpoint(self, epoch: int) -> None:
        assert self.learn is not None
        payload = {
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "opt": _plain(self.learn.opt.state_dict()),
            "history": self.history,
            "lrs": self.lrs,
        }
        path = self.ckpt_dir / f"epoch-{epoch:04d}.pt"
        try:
            write_atomic(path, lambda tmp: torch.save(payload, tmp))
        except (OSError, RuntimeError) as err:
            previous = latest_checkpoint(self.ckpt_dir)
            kept = f"epoch {previous[0]} is intact" if previous else "there is none"
            raise CheckpointError(
                f"{path}: could not write the checkpoint of {self.stage} fold {self.fold + 1} "
                f"epoch {epoch} ({err}); the previous checkpoint: {kept}. Free disk space and "
                "re-run: training continues from the previous checkpoint."
            ) from err
        for old in self.ckpt_dir.glob("epoch-*.pt"):  # keep only the newest
            if old != path:
                old.unlink(missing_ok=True)

    def run(self) -> StageResult:
        done, ckpt = 0, latest_checkpoint(self.ckpt_dir)
        state = None
        if ckpt is not None:
            done, path = ckpt
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.history, self.lrs = list(state["history"]), list(state["lrs"])
        first = 0
        for c, cycle in enumerate(self.settings.cycles):
            last = first + cycle.epochs
            self.size = cycle.size
            if done >= last:
                first = last
                continue
            self.batches.size = cycle.size
            loop = _EpochLoop(self, c, first)
            if self.learn is None:
                self.learn = build_learner(
                    self.model,
                    self.batches,
                    [loop],
                    self.config.augment.mixup_alpha if self.settings.mixup else None,
                    self.device,
                )
                self.learn.create_opt()
                if state is not None:
                    self.learn.opt.load_state_dict(state["opt"])
            else:
                self.learn.remove_cbs([cb for cb in self.learn.cbs if isinstance(cb, _EpochLoop)])
                self.learn.add_cb(loop)
            lr = np.array([cycle.lr] * len(self.learn.opt.param_lists))
            # fit_flat_cos ignores start_epoch (fastai 2.8.12); fit honours it and the
            # scheduler reads the position from the epoch, so the lr curve matches.
            sched = {"lr": combined_cos(self.settings.pct_start, lr, lr, lr / 1e5)}
            self.learn.fit(
                cycle.epochs, cbs=[ParamScheduler(sched)], start_epoch=max(0, done - first)
            )
            first = last
        score, vloss, probs = self.final or self.evaluate()
        model_path = self.out_dir / "model.pt"
        save_model(
            model_path,
            self.model,
            self.vocab,
            self.config,
            self.norm,
            self.size,
            self.stage,
            self.fold,
        )
        np.save(self.out_dir / "valid_probs.npy", probs)
        # The model file is the stage's result; its checkpoints only served resuming.
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        return StageResult(
            self.stage,
            self.fold,
            str(model_path),
            score,
            vloss,
            tuple(self.history),
            resumed_from_epoch=done,
            lrs=tuple(self.lrs),
        )


def train_stage(
    *,
    data: np.ndarray,
    train: Clips,
    valid: Clips,
    vocab: tuple[str, ...],
    config: TrainConfig,
    stage: Stage,
    fold: int,
    out_dir: Path,
    init_weights: Path | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> StageResult:
    """Trains one stage of one fold; continues from its last finished epoch if any.

    Args:
        data: the feature store's array.
        train, valid: clips to train on and to score every epoch (whole clips).
        vocab: label vocabulary (the targets' columns).
        config: the run's configuration.
        stage: ``noisy`` or ``curated``.
        fold: fold index (0-based).
        out_dir: where checkpoints, ``model.pt`` and ``valid_probs.npy`` go.
        init_weights: a model file to start from (curated starts from noisy).
        device: ``cpu`` or ``cuda:N``.
        on_epoch: called after each finished epoch.
    """
    flush_denormals()
    with exclusive(out_dir, f"{stage} fold {fold + 1}"):
        run = _StageRun(
            data=data,
            train=train,
            valid=valid,
            vocab=vocab,
            config=config,
            stage=stage,
            fold=fold,
            out_dir=out_dir,
            init_weights=init_weights,
            device=torch.device(device),
            on_epoch=on_epoch,
        )
        return run.run()
