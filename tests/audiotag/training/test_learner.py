"""audiotag/training/learner.py: the one fastai Learner, and a Mixup whose draws come from
its own generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat
from fastai.optimizer import ranger
from torch import nn

from audiotag.training.batches import TrainBatches, measure_normalizer
from audiotag.training.learner import SeededMixUp, amp_callback, build_learner
from audiotag.training.losses import SoftBootstrapLoss
from tests.helpers.training import N_MELS, WIDTH, synthetic_store

CPU = torch.device("cpu")


def tiny_setup() -> tuple[nn.Module, TrainBatches]:
    data, clips = synthetic_store(n=16)
    norm = measure_normalizer(data, clips, WIDTH, 60.0, 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(N_MELS * WIDTH, 2))
    return model, TrainBatches(data, clips, 4, WIDTH, norm, None, None, CPU)


def test_the_learner_uses_the_batches_bce_and_ranger_and_shows_no_progress_bar() -> None:
    model, batches = tiny_setup()
    learn = build_learner(model, batches, [], None, CPU)
    assert isinstance(learn, Learner) and learn.model is model
    assert learn.dls.train is batches
    assert isinstance(learn.loss_func, BCEWithLogitsLossFlat) and learn.opt_func is ranger
    assert not any(isinstance(cb, ProgressCallback | SeededMixUp) for cb in learn.cbs)


def test_the_given_loss_and_a_seeded_mixup_are_used() -> None:
    model, batches = tiny_setup()
    loss = SoftBootstrapLoss(0.7)
    learn = build_learner(model, batches, [], 0.4, CPU, loss=loss)
    assert learn.loss_func is loss
    (mixup,) = [cb for cb in learn.cbs if isinstance(cb, SeededMixUp)]
    assert mixup.alpha == 0.4


def mix(learn: Learner, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple:
    """One batch through the Learner's Mixup with its generator seeded by ``seed``."""
    (mixup,) = [cb for cb in learn.cbs if isinstance(cb, SeededMixUp)]
    mixup.before_train()
    mixup.rng = np.random.default_rng([seed, 1])  # as EpochLoop reseeds it every epoch
    learn.xb, learn.yb = (x,), (y,)
    mixup.before_batch()
    return learn.xb[0], learn.yb[0], mixup.lam


def test_seeded_mixup_mixes_alike_from_one_seed_and_never_draws_from_torchs_generator() -> None:
    model, batches = tiny_setup()
    learn = build_learner(model, batches, [], 0.4, CPU)
    x, y = next(iter(batches))
    global_state = torch.get_rng_state()
    xa, ya, lam = mix(learn, x, y, 5)
    xb, yb, _ = mix(learn, x, y, 5)
    # Folds training at once in threads share torch's generator: Mixup never draws from it.
    assert torch.equal(torch.get_rng_state(), global_state)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(mix(learn, x, y, 6)[0], xa)
    # Each item is mostly itself: a weight of at least one half, targets mixed alike.
    assert lam.shape == (4,) and bool((lam >= 0.5).all() and (lam <= 1).all())
    assert bool((ya >= 0).all() and (ya <= 1).all()) and not torch.equal(xa, x)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_mixed_precision_autocasts_on_the_models_own_device(
    precision: str, dtype: torch.dtype
) -> None:
    # fastai's MixedPrecision autocasts on "cuda" only: on CPU it did nothing.
    model, batches = tiny_setup()
    seen: list[torch.dtype] = []
    model[1].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    learn = build_learner(model, batches, [], None, CPU, precision=precision)
    assert amp_callback(learn) is not None
    learn.fit(1)
    assert seen and set(seen) == {dtype}
    assert amp_callback(build_learner(model, batches, [], None, CPU)) is None  # CPU: fp32
