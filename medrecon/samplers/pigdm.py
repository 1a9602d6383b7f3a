"""Pseudoinverse-guided diffusion models (ΠGDM), Song, Vahdat, Mardani & Kautz, ICLR 2023 (reference:
NVlabs/RED-diff ``algos/pgdm.py``, the paper's noisy form).

Per step: ``x̂₀ = D(x_t, σ_t)`` with the graph kept; ``v = Aᴴ(r_t² AAᴴ + σ_y² I)⁻¹(y − A x̂₀)`` computed as
``(r_t² AᴴA + σ_y² I)⁻¹ Aᴴ(y − A x̂₀)`` (SVD or CG), ``r_t² = σ_t²/(1 + σ_t²)`` (the paper's
p(x₀|x_t) variance for unit-variance data); the guidance ``g = (∂x̂₀/∂x_t)ᴴ v`` (one backward pass)
is the Gaussian approximation of ``∇ log p(y|x_t)``; the guided estimate ``x̂₀ + w σ_t² g`` (Tweedie for
the conditional) replaces x̂₀ in the DDIM step with the unconditional ε̂. With σ_y = 0 and σ_t ≪ 1
this is the RED-diff code's ``x̂₀ + w·∇⟨A⁺(y − Ax̂₀), x̂₀⟩``. Differences: VE coordinates and the
conditional-Tweedie weight σ_t² (the code's VP weight √ᾱ_s√ᾱ_t differs at large σ_t).
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
                 x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ΠGDM; returns ``[B, *operator.ishape]``. NFE N, N backward passes."""
    s = core.levels(sigmas)
    x = core.start(operator, y, s[0], generator, x_init)
    for i in range(len(s) - 1):
        # denoise with the graph kept
        leaf, x0 = core.denoise_with_grad(denoiser, x, s[i])
        x0d = x0.detach()
        # pseudo-inverse residual v = (r²AᴴA + σ_y²)⁻¹ Aᴴ(y − A x̂₀)
        r2 = s[i] ** 2 / (1 + s[i] ** 2)
        v = core.solve_damped(operator, operator.adjoint(y - operator.forward(x0d)), r2, noise_std**2)
        # guidance (∂x̂₀/∂x_t)ᴴ v by one vector-Jacobian product; guided x̂₀; DDIM step
        g = core.vjp(leaf, x0, lambda z: inner(v, z))
        x = core.ddim_step(x0d + weight * s[i] ** 2 * g, (x - x0d) / s[i], s[i], s[i + 1], eta, generator)
        core.report(callback, i, s[i], x, x0d)
    return x
