"""Pseudoinverse-guided diffusion models (ΠGDM), Song, Vahdat, Mardani & Kautz, ICLR 2023 (reference:
NVlabs/RED-diff ``algos/pgdm.py``, the paper's noisy form).

Per step: ``x̂₀ = D(x_t, σ_t)`` with the graph kept; ``v = Aᴴ(r_t² AAᴴ + σ_y² I)⁻¹(y − A x̂₀)`` computed as
``(r_t² AᴴA + σ_y² I)⁻¹ Aᴴ(y − A x̂₀)`` (SVD or CG), ``r_t² = σ_t² σ_d²/(σ_t² + σ_d²)``, the variance
of p(x₀|x_t) for data of variance σ_d² (the paper's ``σ_t²/(1 + σ_t²)`` is σ_d = 1: images in [−1, 1]);
the guidance ``g = (∂x̂₀/∂x_t)ᴴ v`` (one backward pass)
is the Gaussian approximation of ``∇ log p(y|x_t)``; the guided estimate ``x̂₀ + w σ_t² g`` (Tweedie for
the conditional) replaces x̂₀ in the DDIM step with the unconditional ε̂. With σ_y = 0 and σ_t ≪ 1
this is the RED-diff code's ``x̂₀ + w·∇⟨A⁺(y − Ax̂₀), x̂₀⟩``. Differences: VE coordinates and the
conditional-Tweedie weight σ_t² (the code's VP weight √ᾱ_s√ᾱ_t differs at large σ_t), and σ_d is the
prior's own data scale (``denoiser.sigma_data``, EDM's σ_d: 0.296 for the shipped MRI prior, 0.26 for CT;
1 for a denoiser without one). With σ_d = 1 on data of scale 0.3, r_t² → 1 at large σ_t where the true
posterior variance is σ_d² ≈ 0.09, and the guidance ``σ_t² (∂x̂₀/∂x_t)ᴴ v`` is about 11× too weak there.
Approximate (Gaussian p(x₀|x_t)); noise-aware. Official (RED-diff): 100 steps, w = 1, η = 0.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator, inner


def sample_pigdm(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                 noise_std: float = 0.0, generator: core.Generator = None,
                 callback: Optional[Callable[[dict], None]] = None, weight: float = 1.0, eta: float = 0.0,
                 data_std: Optional[float] = None, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ΠGDM; returns ``[B, *operator.ishape]``. NFE N, N backward passes. ``data_std``: σ_d of r_t²
    (default ``denoiser.sigma_data``, else 1 as in the paper)."""
    s = core.levels(sigmas)
    sd2 = float(data_std if data_std is not None else getattr(denoiser, "sigma_data", 1.0)) ** 2
    x = core.start(operator, y, s[0], generator, x_init)
    for i in range(len(s) - 1):
        # denoise with the graph kept
        leaf, x0 = core.denoise_with_grad(denoiser, x, s[i])
        x0d = x0.detach()
        # pseudo-inverse residual v = (r²AᴴA + σ_y²)⁻¹ Aᴴ(y − A x̂₀)
        r2 = s[i] ** 2 * sd2 / (s[i] ** 2 + sd2)
        v = core.solve_damped(operator, operator.adjoint(y - operator.forward(x0d)), r2, noise_std**2)
        # guidance (∂x̂₀/∂x_t)ᴴ v by one vector-Jacobian product; guided x̂₀; DDIM step
        g = core.vjp(leaf, x0, lambda z: inner(v, z))
        x = core.ddim_step(x0d + weight * s[i] ** 2 * g, (x - x0d) / s[i], s[i], s[i + 1], eta, generator)
        core.report(callback, i, s[i], x, x0d)
    return x
