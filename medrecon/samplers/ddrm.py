"""Denoising Diffusion Restoration Models, Kawar, Elad, Ermon & Song, NeurIPS 2022 (DDRM,
``functions/denoising.py::efficient_generalized_steps``).

In the operator's spectral basis (``x̄ = Vᴴx``, ``ȳ = Σ⁺Uᴴy``, singular values ``s_j``), per coordinate:
missing (``s_j = 0``): ``x̄_s = x̄₀ + σ_s(√(1−η²) ε̂ + η z)``; less noisy than the measurement
(``σ_s s_j < σ_y``): ``x̄_s = x̄₀ + σ_s(√(1−η²)(ȳ − x̄₀) s_j/σ_y + η z)``; otherwise
``x̄_s = (1−η_b) x̄₀ + η_b ȳ + √(σ_s² − η_b²σ_y²/s_j²) z``. Start from p(x_T | y) in spectral space.
These are the paper's VP equations in VE coordinates (x_ve = x_vp/√ᾱ, exact). Needs an exact SVD
(single-coil Cartesian MRI, dense operators); refuses otherwise. Noise-aware through σ_y.
Not an exact posterior sampler (x̂₀ is the unconditional MMSE estimate). Official: 20 steps,
η = 0.85, η_b = 1. NFE N.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_ddrm(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                noise_std: float = 0.0, generator: core.Generator = None,
                callback: Optional[Callable[[dict], None]] = None, eta: float = 0.85, eta_b: float = 1.0,
                x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDRM; returns ``[B, *operator.ishape]``."""
    svd, s = core.get_svd(operator, "ddrm", like=y), core.levels(sigmas)
    sv, ybar = svd.s, svd.ybar(y)
    safe = torch.where(sv > 0, sv, torch.ones_like(sv))
    missing = sv == 0
    # start from p(x_T | y): ȳ plus the remaining noise where the measurement is less noisy than σ_0
    x = core.template(operator, y, x_init)
    z = svd.Vh(core.randn(x, generator))
    meas = ~missing & (s[0] * sv > noise_std)
    rest = (s[0] ** 2 - (noise_std / safe) ** 2).clamp_min(0).sqrt()
    x = svd.V(torch.where(meas, ybar + rest * z, svd.Vh(x) + s[0] * z))
    for i in range(len(s) - 1):
        # denoise, move to spectral coordinates
        x0 = core.denoise(denoiser, x, s[i])
        xb0, eps, z = svd.Vh(x0), svd.Vh(x - x0) / s[i], svd.Vh(core.randn(x, generator))
        nxt = s[i + 1]
        # the three DDRM cases per spectral coordinate
        free = xb0 + nxt * ((1 - eta**2) ** 0.5 * eps + eta * z)
        less = xb0 + nxt * ((1 - eta**2) ** 0.5 * (ybar - xb0) * sv / max(noise_std, 1e-30) + eta * z)
        more = (1 - eta_b) * xb0 + eta_b * ybar + (nxt**2 - (eta_b * noise_std / safe) ** 2).clamp_min(0).sqrt() * z
        xb = torch.where(missing, free, torch.where(nxt * sv < noise_std, less, more))
        x = svd.V(xb)
        core.report(callback, i, s[i], x, x0)
    return x
