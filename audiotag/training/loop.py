"""The epoch loop's callback: seeds each epoch, skips fastai's validation, reports."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from fastai.callback.core import Callback, CancelValidException

from audiotag.stopping import check_stop
from audiotag.training.batches import TrainBatches
from audiotag.training.learner import SeededMixUp

# (epoch over the whole stage, 1-based; cycle index; mean train loss; seconds)
FinishEpoch = Callable[[int, int, float, float], None]


class EpochLoop(Callback):
    """Seeds each epoch's crops and Mixup, records losses and learning rates, and hands
    each finished epoch to ``finish`` (whole-clip scoring and the checkpoint live there,
    in place of fastai's validation)."""

    order = 80  # after fastai's SkipToEpoch, so skipped epochs never reach before_epoch

    def __init__(
        self,
        batches: TrainBatches,
        seed: int,
        cycle: int,
        first_epoch: int,
        lrs: list[float],
        finish: FinishEpoch,
    ) -> None:
        self.batches, self.seed, self.cycle, self.first_epoch = batches, seed, cycle, first_epoch
        self.lrs, self.finish = lrs, finish
        self.active = False

    def before_epoch(self) -> None:
        self.active = True
        self.t0 = time.perf_counter()
        self.losses: list[float] = []
        seed = self.seed * 10_000 + self.first_epoch + self.epoch
        self.batches.set_epoch(seed)
        for cb in self.learn.cbs:
            if isinstance(cb, SeededMixUp):
                cb.rng = np.random.default_rng([seed, 1])

    def before_batch(self) -> None:
        # Ctrl-C: within one batch; the last finished epoch's checkpoint is what is kept.
        check_stop("training")

    def after_batch(self) -> None:
        if self.training:
            self.losses.append(float(self.learn.loss.detach()))
            self.lrs.append(float(self.learn.opt.hypers[-1]["lr"]))

    def before_validate(self) -> None:
        raise CancelValidException

    def after_epoch(self) -> None:
        if not self.active:
            return
        self.active = False
        self.finish(
            self.first_epoch + self.epoch + 1,
            self.cycle,
            float(np.mean(self.losses)) if self.losses else math.nan,
            time.perf_counter() - self.t0,
        )
