import torch
from torch import nn

from audiotag.config import ModelSettings, load_config
from audiotag.training.models import MaxBlurPool, MeanMaxPool, build_model


def test_reference_model_80_classes_forward_backward_256() -> None:
    cfg = load_config("reference")
    assert cfg.model == ModelSettings(
        arch="xresnet50", self_attention=True, act="mish", blur_pool=True
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, 80)
    x = torch.randn(2, 1, 256, 256)
    out = model(x)
    assert out.shape == (2, 80)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert any(isinstance(m, nn.Mish) for m in model.modules())


def test_no_maxpool_remains_and_blurpool_shape() -> None:
    model = build_model(load_config("reference").model, 80)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    pools = [m for m in model.modules() if isinstance(m, MaxBlurPool)]
    assert len(pools) == 1
    x = torch.randn(2, pools[0].channels, 64, 63)
    assert pools[0](x).shape == (2, pools[0].channels, 32, 32)
    # Same shape as the MaxPool2d it replaced.
    assert nn.MaxPool2d(3, 2, 1)(x).shape == pools[0](x).shape


def test_blurpool_is_less_shift_sensitive_than_maxpool() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    shifted = torch.roll(x, 1, dims=3)
    blur = MaxBlurPool(1)
    mp = nn.MaxPool2d(3, 2, 1)
    d_blur = (blur(x) - blur(shifted)).abs().mean()
    d_mp = (mp(x) - mp(shifted)).abs().mean()
    assert d_blur < d_mp


def test_models_are_channels_last_and_weights_move_between_layouts() -> None:
    """Models are built channels_last (faster on CPU and GPU); a model file written in
    either layout loads into the other and predicts the same."""
    settings = load_config("demo").model
    torch.manual_seed(0)
    model = build_model(settings, 6).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = build_model(settings, 6).to(memory_format=torch.contiguous_format).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=1e-4)
        again = build_model(settings, 6).eval()
        again.load_state_dict(plain.state_dict())
        torch.testing.assert_close(again(x), model(x), atol=1e-5, rtol=1e-4)


def test_the_mean_max_head_keeps_a_short_sound_that_the_average_dilutes() -> None:
    """One loud frame in a long window: the average head's input shrinks with the
    window, the mean-max head's stays; its model has the average one's weights."""
    short = torch.zeros(1, 4, 8, 64)
    short[..., 10] = 1.0
    avg = nn.AdaptiveAvgPool2d(1)
    assert avg(short).max() < 0.02
    torch.testing.assert_close(MeanMaxPool()(short), torch.full((1, 4, 1, 1), 1 + 1 / 64))
    settings = load_config("demo").model
    mean_max = build_model(settings.model_copy(update={"head_pool": "mean_max"}), 6)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in mean_max.modules())
    mean_max.load_state_dict(build_model(settings, 6).state_dict())
    out = mean_max(torch.randn(2, 1, 64, 48))
    assert out.shape == (2, 6)
    out.sum().backward()
