"""Denoising Diffusion Null-space Model, Wang, Yu & Zhang, ICLR 2023 (DDNM, ``svd_ddnm.py::ddnm_diffusion``,
``simplified_ddnm_plus``).

Per step: ``x̂₀ ← x̂₀ − λ_s A⁺(A x̂₀ − y)`` (range–null-space decomposition), then
``x_s = x̂₀ + γ_s (η z + √(1−η²) ε̂)`` with the unconditional ``ε̂ = (x_t − x̂₀)/σ_t`` — DDNM's VP step
``√ᾱ_s x̂₀ + √(1−ᾱ_s)(η z + √(1−η²) ε̂)`` in VE coordinates. Noiseless data: λ = 1, γ_s = σ_s (DDNM).
With σ_y > 0 (DDNM⁺, scalar form): ``λ_s = 1`` if ``σ_s ≥ σ_y`` else ``σ_s/σ_y``, and
``γ_s = √(σ_s² − (λ_s σ_y)²)`` (the injected measurement noise is counted in the level) — exact for
operators with unit singular values (Cartesian MRI), approximate otherwise. No time travel.
``A⁺`` is exact through an SVD when the operator has one, else CG (any operator).
Official: 100 steps, η = 0.85. NFE N.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_ddnm(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                noise_std: float = 0.0, generator: core.Generator = None,
                callback: Optional[Callable[[dict], None]] = None, eta: float = 0.85,
                x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDNM (noiseless) / scalar DDNM⁺ (σ_y > 0); returns ``[B, *operator.ishape]``."""
    s = core.levels(sigmas)
    x = core.start(operator, y, s[0], generator, x_init)
    for i in range(len(s) - 1):
        # denoise
        x0 = core.denoise(denoiser, x, s[i])
        eps = (x - x0) / s[i]
        # range-space correction of x̂₀, weight λ_s (DDNM⁺ when σ_y > 0)
        lam = 1.0 if s[i + 1] >= noise_std else s[i + 1] / noise_std
        x0c = core.project(operator, x0, y, lam)
        # DDNM step with the remaining noise level γ_s
        gamma = max(0.0, s[i + 1] ** 2 - (lam * noise_std) ** 2) ** 0.5
        x = x0c + gamma * (1 - eta**2) ** 0.5 * eps
        if gamma > 0 and eta > 0:
            x = x + gamma * eta * core.randn(x, generator)
        core.report(callback, i, s[i], x, x0)
    return x
