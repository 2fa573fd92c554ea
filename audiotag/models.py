"""The network: fastai's xresnet with Mish, self-attention and MaxBlurPool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.vision.models import xresnet
from torch import nn

from audiotag.config import ModelSettings

_ARCHS = {
    "xresnet18": xresnet.xresnet18,
    "xresnet34": xresnet.xresnet34,
    "xresnet50": xresnet.xresnet50,
}


class MaxBlurPool(nn.Module):
    """Max-pool densely, then blur and subsample (Zhang 2019, 'Making CNNs shift-invariant').

    A drop-in for ``MaxPool2d(kernel, stride=2, padding=kernel // 2)``: the
    output shape is the same, ``(B, C, ceil(H / 2), ceil(W / 2))``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size {kernel_size} and stride {stride} must be >= 1")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        taps = torch.tensor([1.0, 2.0, 1.0])
        blur = torch.outer(taps, taps) / 16.0
        self.register_buffer("blur", blur.expand(channels, 1, 3, 3).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, self.kernel_size, stride=1, padding=self.kernel_size // 2)
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.blur, stride=self.stride, groups=self.channels)


def replace_maxpool(model: nn.Module) -> nn.Module:
    """Replaces every ``MaxPool2d`` in ``model`` with a `MaxBlurPool` (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d):
            k = child.kernel_size if isinstance(child.kernel_size, int) else child.kernel_size[0]
            s = child.stride if isinstance(child.stride, int) else child.stride[0]
            setattr(model, name, MaxBlurPool(_channels_before(model, name), k, s))
        else:
            replace_maxpool(child)
    return model


def _channels_before(parent: nn.Module, name: str) -> int:
    """Output channels of the last conv or norm before child ``name`` of ``parent``."""
    channels = None
    for child_name, child in parent.named_children():
        if child_name == name:
            break
        for m in child.modules():
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
            elif isinstance(m, nn.BatchNorm2d):
                channels = m.num_features
    if channels is None:
        raise ValueError(f"cannot tell the channels entering {name}")
    return channels


def build_model(settings: ModelSettings, n_classes: int) -> nn.Module:
    """``xresnetNN(pretrained=False, act_cls=Mish, sa=True, c_in=1, n_out=n_classes)``.

    With the settings' depth, width multiplier, activation and pooling.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    act = nn.Mish if settings.act == "mish" else nn.ReLU
    model = _ARCHS[settings.arch](
        pretrained=False,
        act_cls=act,
        sa=settings.self_attention,
        c_in=1,
        n_out=n_classes,
        widen=settings.widen,
    )
    return replace_maxpool(model) if settings.blur_pool else model
