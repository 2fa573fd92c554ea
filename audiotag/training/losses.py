"""Training losses: BCE with logits, and soft bootstrapping for noisy labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.losses import BCEWithLogitsLossFlat
from torch import nn

from audiotag.config import StageSettings


class SoftBootstrapLoss(nn.Module):
    """Soft bootstrapping (Reed et al. 2014), the FAT2019 winner's loss for noisy labels.

    BCE with logits against ``beta * target + (1 - beta) * sigmoid(logits)``: a clip's
    own prediction takes a share ``1 - beta`` of its target, so a wrong label pulls
    less. The prediction's share is detached: the gradient reaches the logits through
    the BCE's input only, and is ``beta`` times BCE's (``beta * (sigmoid(x) - y)``), so
    the model is never pushed toward its own output. ``beta = 1`` is plain BCE.

    Targets may be soft (fastai's MixUp mixes them), any shape equal to the logits'.
    """

    def __init__(self, beta: float = 0.7, reduction: str = "mean") -> None:
        super().__init__()
        if not 0 < beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.beta = beta
        self.reduction = reduction  # fastai's NoneReduce sets it

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: ``logits`` and ``target``, ``(batch, n_classes)``. Returns the loss."""
        logits = logits.float()
        target = target.float().view_as(logits)
        soft = self.beta * target + (1 - self.beta) * torch.sigmoid(logits).detach()
        return F.binary_cross_entropy_with_logits(logits, soft, reduction=self.reduction)


def stage_loss(settings: StageSettings) -> nn.Module | BCEWithLogitsLossFlat:
    """The loss ``settings`` asks for (``loss``, ``bootstrap_beta``)."""
    if settings.loss == "soft_bootstrap":
        return SoftBootstrapLoss(settings.bootstrap_beta)
    return BCEWithLogitsLossFlat()
