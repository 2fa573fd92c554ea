"""The fastai ``Learner``, built here and nowhere else, and its seeded Mixup."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch
from fastai.callback.channelslast import ChannelsLast
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat
from fastai.optimizer import ranger
from fastcore.foundation import L
from torch import nn
from torch.amp import GradScaler

from audiotag.devices import autocast_dtype, device_precision
from audiotag.training.batches import TrainBatches

# torch's global generator is shared by every thread of the process, and folds train in
# threads at once (one per GPU, a few on CPU): what draws from it does so under this lock
# (initial weights), and everything else draws from the fold's own generators.
GLOBAL_RNG = threading.Lock()


class SeededMixUp(MixUp):
    """fastai's MixUp with its Beta draws and pairings from its own generator.

    fastai's draws from torch's global generator, which folds training at once in
    one process would share, so a fold's result would depend on its neighbours'.
    ``rng`` is reseeded every epoch (``EpochLoop``), so a resumed fold draws alike.
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


class DeviceMixedPrecision(MixedPrecision):
    """fastai's MixedPrecision on the model's device, with one loss scaler for the
    Learner's life.

    fastai's autocasts and scales on ``"cuda"`` only (on CPU it silently does nothing)
    and makes a new scaler every ``fit``: a stage fits once per cycle, so the fp16 loss
    scale fell back to its start at every cycle and at every resume. Here the scaler is
    made once, carries over the cycles, and its ``state_dict`` goes into each epoch's
    checkpoint (``scaler``), so a resumed fold scales as an uninterrupted one.
    """

    def __init__(self, device: torch.device, precision: str) -> None:
        super().__init__(AMPMode(precision))
        self.device_type, self.dtype = device.type, autocast_dtype(precision)
        # bf16 has float32's range: its scaler is disabled, as fastai's.
        self.grad_scaler = GradScaler(device.type, enabled=self.dtype == torch.float16)

    def before_fit(self) -> None:
        self.autocast = torch.autocast(self.device_type, dtype=self.dtype)
        self.learn.scaler, self.scales = self.grad_scaler, L()


def amp_callback(learn: Learner) -> DeviceMixedPrecision | None:
    """The Learner's mixed-precision callback, if it trains in one."""
    return next((cb for cb in learn.cbs if isinstance(cb, DeviceMixedPrecision)), None)


def build_learner(
    model: nn.Module,
    batches: TrainBatches,
    cbs: Sequence[Callback],
    mixup_alpha: float | None,
    device: torch.device,
    loss: nn.Module | BCEWithLogitsLossFlat | None = None,
    precision: str | None = None,
) -> Learner:
    """The one place a fastai Learner is made: the loss (default BCE with logits;
    `audiotag.training.losses.stage_loss`), Ranger, optional Mixup, and the precision
    (`audiotag.devices.device_precision`: None is the device's own, bf16 or fp16 on a
    GPU, fp32 on CPU; bf16 and fp16 run the same autocast and scaler code on CPU)."""
    all_cbs = list(cbs) + ([SeededMixUp(mixup_alpha)] if mixup_alpha else [])
    learn = Learner(
        DataLoaders(batches, []),
        model,
        loss_func=BCEWithLogitsLossFlat() if loss is None else loss,
        opt_func=ranger,
        cbs=all_cbs,
    )
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, ProgressCallback)])
    learn.logger = lambda *_: None
    precision = device_precision(device, precision)
    if precision != "fp32":
        learn.add_cbs([ChannelsLast(), DeviceMixedPrecision(device, precision)])
    return learn
