"""UNet: fully convolutional, rebuildable from its config, clear errors on bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medrecon import MedreconError
from medrecon.priors import DEFAULT_CONFIG, UNet
from tests.priors.conftest import TINY, randomized


@pytest.mark.parametrize("size", [64, 96, 128])
def test_same_weights_run_at_several_sizes(tiny_unet, size):
    x = torch.randn(1, 2, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        out = tiny_unet(x, torch.tensor([0.5]))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().mean() > 1e-3


def test_rectangular_and_non_multiple_sizes_are_padded_by_reflection(tiny_unet):
    # 4 levels of the tiny net => multiples of 4; 62x61 is reflect-padded to 64x64 and cropped back.
    x = torch.randn(1, 2, 62, 61, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = tiny_unet(x, torch.tensor([0.3]))
        ref = tiny_unet(F.pad(x, (0, 3, 0, 2), mode="reflect"), torch.tensor([0.3]))[..., :62, :61]
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref)


def test_config_rebuilds_the_same_network(tiny_unet):
    clone = UNet(**tiny_unet.config)
    clone.load_state_dict(tiny_unet.state_dict())
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(x, torch.tensor([0.1])), tiny_unet(x, torch.tensor([0.1])))
    assert tiny_unet.config["channel_mult"] == [1, 2, 2] and tiny_unet.config["num_blocks"] == [1, 1, 1]


def test_noise_level_changes_the_output(tiny_unet):
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        a, b = tiny_unet(x, torch.tensor([-1.0])), tiny_unet(x, torch.tensor([1.0]))
    assert (a - b).abs().max() > 1e-3


def test_untrained_network_outputs_zero():
    net = UNet(1, 1, **TINY)
    assert net(torch.randn(1, 1, 16, 16), torch.zeros(1)).abs().max() == 0


def test_positional_embedding_and_gradients():
    net = randomized(UNet(1, 1, **{**TINY, "embedding": "positional"}))
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    net(x, torch.tensor([0.0, 1.0])).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_default_config_fits_the_checkpoint_budget():
    net = UNet(2, 2, **DEFAULT_CONFIG)
    params = sum(p.numel() for p in net.parameters())
    assert 3e6 <= params <= 7e6  # ≤ 15 MiB in float16
    assert DEFAULT_CONFIG["attn_levels"] == [len(DEFAULT_CONFIG["channel_mult"]) - 1]


@pytest.mark.parametrize("x", [torch.randn(1, 1, 16, 16), torch.randn(2, 16, 16), torch.randn(1, 2, 16, 16, dtype=torch.complex64)])
def test_bad_input_names_expected_and_received(tiny_unet, x):
    with pytest.raises(MedreconError, match=r"expected a real tensor \[B, 2, H, W\], received"):
        tiny_unet(x, torch.zeros(1))


def test_bad_config_is_rejected():
    with pytest.raises(MedreconError, match="attn_levels"):
        UNet(1, 1, channel_mult=(1, 2), attn_levels=(2,))
    with pytest.raises(MedreconError, match="num_blocks"):
        UNet(1, 1, channel_mult=(1, 2), num_blocks=[1])
