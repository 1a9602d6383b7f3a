"""Wrappers that turn networks into VE denoisers ``D(x, σ)`` (see :mod:`medrecon.priors.base`).

* :class:`EDMPrecond` — the preconditioning of Karras, Aittala, Aila, Laine, "Elucidating the
  Design Space of Diffusion-Based Generative Models" (NeurIPS 2022), Table 1 / eq. 7:
  ``D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))``.
* :class:`ComplexAsChannels` — complex ``[B, C, H, W]`` ↔ real ``[B, 2C, H, W]`` ordered
  ``[re₁..re_C, im₁..im_C]`` (for MRI, C = 1: channels ``[re, im]``). This is the only place in
  medrecon where complex images become real channels; real images pass through.
* :class:`VPDenoiser` — a variance-preserving DDPM ε-model (Ho et al. 2020) seen as a VE denoiser
  (Song et al. 2021, "Score-Based Generative Modeling through SDEs", §B; Karras et al. 2022,
  Table 1 "VP" column; k-diffusion's discrete ε wrapper).

Written from the papers; no code copied from the EDM repository (CC BY-NC-SA).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from medrecon.priors.base import Sigma, sigma_tensor, sigma_view

__all__ = ["EDMPrecond", "ComplexAsChannels", "VPDenoiser"]


def _net_dtype(net: nn.Module, fallback: torch.dtype) -> torch.dtype:
    param = next(iter(net.parameters()), None)
    return param.dtype if param is not None else fallback


class EDMPrecond(nn.Module):
    """EDM-preconditioned denoiser around a network ``net(x_in [B,C,H,W], c_noise [B])`` (real).

    Args:
        net: the raw network F (e.g. :class:`~medrecon.priors.UNet`).
        sigma_data: standard deviation of the (normalised) training data, σ_d.
        sigma_min, sigma_max: the noise range the network was trained for (used by samplers to
            build schedules; not enforced here).

    ``forward(x, sigma)`` takes real ``x`` (any float dtype; the network runs in its own dtype)
    and returns ``D(x, σ)`` in ``x``'s dtype.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        super().__init__()
        self.net = net
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out, c_in, c_noise)`` for σ > 0, elementwise (Karras et al. 2022, Table 1)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.clamp_min(1e-20).log() / 4  # clamp: σ = 0 gives D = x instead of NaN
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        s = sigma_tensor(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        dtype = _net_dtype(self.net, x.dtype)
        out = self.net((sigma_view(c_in, x) * x).to(dtype), c_noise.to(dtype))
        return sigma_view(c_skip, x) * x + sigma_view(c_out, x) * out.to(x.dtype)


class ComplexAsChannels(nn.Module):
    """``D(x, σ)`` for complex ``x [B, C, H, W]`` through a real model on ``[B, 2C, H, W]`` (re then im).

    Each real channel carries noise variance σ² (the :mod:`medrecon.noise` convention), so σ is
    passed through unchanged. Real inputs go straight to ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def to_channels(x: torch.Tensor) -> torch.Tensor:
        """Complex ``[B, C, H, W]`` → real ``[B, 2C, H, W]`` = ``[re, im]``."""
        return torch.cat([x.real, x.imag], dim=1)

    @staticmethod
    def to_complex(x: torch.Tensor) -> torch.Tensor:
        """Real ``[B, 2C, H, W]`` → complex ``[B, C, H, W]`` (inverse of :meth:`to_channels`)."""
        re, im = x.chunk(2, dim=1)
        return torch.complex(re, im)

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        if not x.is_complex():
            return self.model(x, sigma)
        return self.to_complex(self.model(self.to_channels(x), sigma)).to(x.dtype)


class VPDenoiser(nn.Module):
    """A discrete-time VP ε-model ``eps_model(x_t, t)`` as a VE denoiser.

    VP marginal ``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε`` equals ``√ᾱ_t·(x₀ + σ·ε)`` with ``ᾱ = 1/(1+σ²)``,
    i.e. ``σ_t = √((1−ᾱ_t)/ᾱ_t)``. So ``D(x, σ) = x − σ·ε(x/√(1+σ²), t(σ))`` (Karras et al. 2022,
    Table 1, VP: c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1)).

    Args:
        eps_model: callable ``(x_vp [B,C,H,W], t [B]) -> ε̂`` (an output with 2C channels, ADM's
            learned-variance head, is cut to its first C channels).
        alphas_cumprod: ``ᾱ_t`` for t = 0..T−1 (decreasing).
        timestep: ``"nearest"`` passes the integer t whose σ_t is nearest in log σ; ``"interpolate"``
            passes a fractional t, linear in log σ between neighbours (k-diffusion's ``sigma_to_t``).
    """

    def __init__(self, eps_model: Callable, alphas_cumprod: torch.Tensor, timestep: str = "nearest") -> None:
        super().__init__()
        if timestep not in ("nearest", "interpolate"):
            raise ValueError(f"timestep must be 'nearest' or 'interpolate', received {timestep!r}")
        self.eps_model, self.timestep = eps_model, timestep
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.register_buffer("log_sigmas", (((1 - abar) / abar).sqrt()).log())

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Timesteps for σ ([B] → [B]; long for ``"nearest"``, float for ``"interpolate"``)."""
        log_s = sigma.to(torch.float64).clamp_min(1e-30).log()
        if self.timestep == "nearest":
            return (log_s[:, None] - self.log_sigmas[None, :]).abs().argmin(dim=1)
        ls = self.log_sigmas
        hi = torch.searchsorted(ls, log_s.contiguous()).clamp(1, ls.numel() - 1)
        frac = ((log_s - ls[hi - 1]) / (ls[hi] - ls[hi - 1])).clamp(0, 1)
        return hi - 1 + frac

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        s = sigma_tensor(sigma, x)
        eps = self.eps_model(x / sigma_view((s**2 + 1).sqrt(), x), self.sigma_to_t(s).to(x.device))
        return x - sigma_view(s, x) * eps[:, : x.shape[1]].to(x.dtype)
