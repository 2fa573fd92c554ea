"""The networks: plain ``nn.Module``s built by name from a small registry.

The report's network is fastai's xresnet with Mish, self-attention and MaxBlurPool.
To add an architecture, register a builder here and add its name to
``ModelSettings.arch`` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from fastai.layers import SimpleSelfAttention
from fastai.vision.models import xresnet
from torch import nn

from audiotag.config import ModelSettings

# name -> builder(settings, n_classes): a network that maps (batch, 1, n_mels, frames)
# to (batch, n_classes) logits.
ArchBuilder = Callable[[ModelSettings, int], nn.Module]
ARCHITECTURES: dict[str, ArchBuilder] = {}


def register_architecture(name: str) -> Callable[[ArchBuilder], ArchBuilder]:
    """Registers a builder under ``name`` (the value of ``ModelSettings.arch``)."""

    def register(builder: ArchBuilder) -> ArchBuilder:
        ARCHITECTURES[name] = builder
        return builder

    return register


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


class MeanMaxPool(nn.Module):
    """``(B, C, bands, frames)`` -> ``(B, C, 1, 1)``: the mean over bands, then the max
    plus the mean over frames (Kong et al. 2020, PANNs). No weights: a drop-in for the
    head's ``AdaptiveAvgPool2d(1)``, the state_dict keys stay fastai's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2)
        return (x.amax(dim=2) + x.mean(dim=2))[:, :, None, None]


class _ChannelsLast(torch.autograd.Function):
    """channels_last on the way forward and for the gradient on the way back."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def keep_channels_last(model: nn.Module) -> nn.Module:
    """Keeps activations and gradients channels_last through the whole network (in place).

    Two layers hand back NCHW tensors: fastai's ``SimpleSelfAttention`` (its output and
    its input's gradient) and the head's pool (its input's gradient). Every
    elementwise op that meets one NCHW and one channels_last operand then takes a slow
    strided path (Mish's backward 10x slower on CPU), so these are converted back.
    Hooks, not extra layers: the state_dict keys stay those of fastai's xresnet.
    """

    def on_input(_: nn.Module, args: tuple) -> tuple:
        return (_ChannelsLast.apply(args[0]), *args[1:])

    def on_output(_: nn.Module, __: tuple, out: torch.Tensor) -> torch.Tensor:
        return _ChannelsLast.apply(out)

    for m in model.modules():
        if isinstance(m, SimpleSelfAttention | nn.AdaptiveAvgPool2d | MeanMaxPool):
            m.register_forward_pre_hook(on_input)
        if isinstance(m, SimpleSelfAttention):
            m.register_forward_hook(on_output)
    return model


def _xresnet(depth: Callable[..., nn.Module]) -> ArchBuilder:
    """``xresnetNN(pretrained=False, act_cls=Mish, sa=True, c_in=1, n_out=n_classes)``,
    with the settings' width multiplier, activation, self-attention and pooling."""

    def build(settings: ModelSettings, n_classes: int) -> nn.Module:
        act = nn.Mish if settings.act == "mish" else nn.ReLU
        model = depth(
            pretrained=False,
            act_cls=act,
            sa=settings.self_attention,
            c_in=1,
            n_out=n_classes,
            widen=settings.widen,
        )
        if settings.blur_pool:
            replace_maxpool(model)
        if settings.head_pool == "mean_max":
            for i, layer in enumerate(model):
                if isinstance(layer, nn.AdaptiveAvgPool2d):
                    model[i] = MeanMaxPool()
        return model

    return build


for _name in ("xresnet18", "xresnet34", "xresnet50"):
    register_architecture(_name)(_xresnet(getattr(xresnet, _name)))


def build_model(settings: ModelSettings, n_classes: int) -> nn.Module:
    """The network ``settings.arch`` names, for ``n_classes`` outputs, in channels_last.

    Raises:
        ValueError: ``n_classes`` below 1, or an architecture nobody registered.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if settings.arch not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {settings.arch!r}; registered: {sorted(ARCHITECTURES)}"
        )
    model = ARCHITECTURES[settings.arch](settings, n_classes)
    # channels_last: oneDNN's convolutions and pooling on CPU (its dense max pool 10x
    # faster), and cuDNN's under mixed precision, run faster in it
    # (bench/train_throughput.py: 1.3-1.5x on two CPU cores).
    return keep_channels_last(model.to(memory_format=torch.channels_last))
