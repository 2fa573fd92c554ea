"""Soft bootstrapping: BCE at beta = 1, pulled toward the prediction below it, its
gradient through the BCE's input only, and a fastai fit with MixUp on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fastai.losses import BCEWithLogitsLossFlat

from audiotag.config import load_config
from audiotag.training.losses import SoftBootstrapLoss, stage_loss
from tests.helpers.training import synthetic_store, tiny_config, train_one


def batch(seed: int = 0, soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, 5, generator=g) * 3
    target = torch.rand(16, 5, generator=g)  # MixUp's targets are soft
    return logits, target if soft else (target > 0.5).float()


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "mixed"])
def test_beta_one_is_bce_with_logits(soft: bool) -> None:
    logits, target = batch(1, soft)
    got = SoftBootstrapLoss(beta=1.0)(logits, target)
    assert torch.allclose(got, BCEWithLogitsLossFlat()(logits, target), atol=1e-6)
    assert torch.allclose(got, F.binary_cross_entropy_with_logits(logits, target), atol=1e-6)


def test_below_one_the_target_moves_toward_the_prediction() -> None:
    logits, target = batch(2)
    # A confident prediction against its label costs less the more the prediction counts.
    losses = [SoftBootstrapLoss(beta)(logits, target).item() for beta in (1.0, 0.7, 0.3)]
    assert losses[0] > losses[1] > losses[2]
    # It equals BCE against the mixed target, computed by hand.
    beta, p = 0.7, torch.sigmoid(logits)
    by_hand = -(
        (beta * target + (1 - beta) * p) * torch.log(p)
        + (1 - beta * target - (1 - beta) * p) * torch.log(1 - p)
    ).mean()
    assert SoftBootstrapLoss(beta)(logits, target).item() == pytest.approx(by_hand.item(), 1e-5)


@pytest.mark.parametrize("beta", [1.0, 0.7, 0.2])
def test_the_gradient_flows_through_the_bce_input_only(beta: float) -> None:
    logits, target = batch(3)
    x = logits.clone().requires_grad_(True)
    SoftBootstrapLoss(beta)(x, target).backward()
    # d/dx BCE(x, t) with t held fixed: (sigmoid(x) - t) / N, t = beta y + (1 - beta) p,
    # so beta * (sigmoid(x) - y) / N: no path through the prediction in the target.
    expected = beta * (torch.sigmoid(logits) - target) / target.numel()
    assert torch.allclose(x.grad, expected, atol=1e-7)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="beta"):
        SoftBootstrapLoss(0.0)
    with pytest.raises(ValueError, match="beta"):
        load_config("demo", {"curated.bootstrap_beta": 1.5})
    with pytest.raises(ValueError, match="soft_bootstrap"):
        load_config("demo", {"curated.loss": "focal"})


def test_the_stage_chooses_the_loss_and_bce_stays_the_default() -> None:
    config = load_config("demo", {"curated.loss": "soft_bootstrap", "curated.bootstrap_beta": 0.5})
    assert isinstance(stage_loss(config.stage("noisy")), BCEWithLogitsLossFlat)
    loss = stage_loss(config.stage("curated"))
    assert isinstance(loss, SoftBootstrapLoss) and loss.beta == 0.5
    for preset in ("reference", "demo", "debug", "plus", "demo_plus"):
        assert {st.loss for st in load_config(preset).stages} == {"bce"}


def _weights(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_a_short_fit_with_mixup_trains_on_it_and_beta_one_matches_bce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, clips = synthetic_store()
    targets: list[torch.Tensor] = []
    forward = SoftBootstrapLoss.forward

    def spy(self: SoftBootstrapLoss, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        targets.append(target.detach().clone())
        return forward(self, logits, target)

    monkeypatch.setattr(SoftBootstrapLoss, "forward", spy)
    one = {"noisy.cycles": [{"epochs": 1, "lr": 3e-3}], "noisy.mixup": True}

    def fit(name: str, **stage) -> dict[str, torch.Tensor]:
        overrides = {**one, **{f"noisy.{k}": v for k, v in stage.items()}}
        result = train_one(tmp_path / name, tiny_config(**overrides), data, clips)
        assert result.history and all(torch.isfinite(torch.tensor(result.lrs)))
        return _weights(result.model_path)

    bce = fit("bce")
    same = fit("beta1", loss="soft_bootstrap", bootstrap_beta=1.0)
    boot = fit("boot", loss="soft_bootstrap", bootstrap_beta=0.7)
    # fastai's MixUp called it on mixed targets, strictly between 0 and 1 somewhere.
    mixed = torch.cat([t.flatten() for t in targets])
    assert ((mixed > 0) & (mixed < 1)).any()
    assert all(torch.allclose(bce[k].float(), same[k].float(), atol=1e-5) for k in bce)
    assert not all(torch.allclose(bce[k].float(), boot[k].float(), atol=1e-5) for k in bce)
