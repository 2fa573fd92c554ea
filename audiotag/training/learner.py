"""The fastai ``Learner``, built here and nowhere else, and its seeded Mixup."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat
from fastai.optimizer import ranger
from fastcore.foundation import L
from torch import nn

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


def build_learner(
    model: nn.Module,
    batches: TrainBatches,
    cbs: Sequence[Callback],
    mixup_alpha: float | None,
    device: torch.device,
    loss: nn.Module | BCEWithLogitsLossFlat | None = None,
) -> Learner:
    """The one place a fastai Learner is made: the loss (default BCE with logits;
    `audiotag.training.losses.stage_loss`), Ranger, optional Mixup."""
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
    if device.type == "cuda":
        import fastai.callback.channelslast  # noqa: F401  (adds Learner.to_channelslast)
        from fastai.callback.fp16 import AMPMode

        mode = AMPMode.BF16 if torch.cuda.is_bf16_supported() else AMPMode.FP16
        learn.to_channelslast(amp_mode=mode)
    return learn
