"""The one place that draws Gaussian noise for images (DESIGN.md, "Complex noise").

Priors see complex images as two real channels with variance σ² each. ``torch.randn_like`` on a
complex tensor gives variance ½ per component, so everything that noises an image (training,
samplers, simulations) calls :func:`randn_like`, which returns unit variance per real component.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["randn_like"]


def randn_like(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``: N(0, 1) per real component (``re`` and ``im`` each for complex ``x``)."""
    if x.is_complex():
        real = x.real.dtype
        re = torch.randn(x.shape, dtype=real, device=x.device, generator=generator)
        im = torch.randn(x.shape, dtype=real, device=x.device, generator=generator)
        return torch.complex(re, im)
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
