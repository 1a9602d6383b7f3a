"""Shared fixtures for the prior tests: tiny networks with non-trivial (non-zero-initialised) weights."""
from __future__ import annotations

import pytest
import torch

from medrecon.priors import EDMPrecond, UNet

TINY = dict(model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, attn_levels=(2,), head_channels=8)


def randomized(net: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Perturb every parameter so that zero-initialised output layers do not hide bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return net


@pytest.fixture
def tiny_unet() -> UNet:
    return randomized(UNet(2, 2, **TINY)).eval()


@pytest.fixture
def tiny_precond(tiny_unet: UNet) -> EDMPrecond:
    return EDMPrecond(tiny_unet, sigma_data=0.5, sigma_min=0.002, sigma_max=80.0)
