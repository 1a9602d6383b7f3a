"""Stochastic Solutions for Linear Inverse Problems using the prior implicit in a denoiser,
Kawar, Vaksman & Elad, NeurIPS 2021 (snips_torch, ``general_anneal_Langevin_dynamics``).

Annealed Langevin in the operator's spectral basis (``x̄ = Vᴴx``, ``ȳ = Σ⁺Uᴴy``), level σ, ``c = step_lr/σ_L²``;
per coordinate ``x̄ ← x̄ + α g + √(2α) z`` with: missing: ``g = s̄``, ``α = cσ²``; ``σ s_j > σ_y``
(likelihood only): ``g = (ȳ − x̄)/(σ² − σ_y²/s_j²)``, ``α = c(σ² − σ_y²/s_j²)``; ``σ s_j < σ_y``:
``g = s̄ + (ȳ − x̄)/(σ_y²/s_j² − σ²)``, ``α = cσ²(1 − (s_jσ/σ_y)²)``. At the last level this is
preconditioned Langevin on p_{σ_L}(x | y), so it samples the posterior (up to σ_L and step-size bias).
Needs an exact SVD (single-coil Cartesian MRI, dense operators); refuses otherwise. Noise-aware.
Returns the last iterate (noise level σ_L). Official (CelebA): 500 levels 90 → 0.01, 5 steps
each, step_lr 3.3e-6 (NFE 2500).

We differ: ``c = step_lr/σ_ref²`` with the official last level ``σ_ref = 0.01``, not the last level of
the schedule that runs: on a prior trained down to σ_min = 0.002 the official rule would take steps
25× the published ones (c = 0.83 instead of 0.033).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_snips(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                 noise_std: float = 0.0, generator: core.Generator = None,
                 callback: Optional[Callable[[dict], None]] = None, step_lr: float = 3.3e-6, sigma_ref: float = 0.01,
                 n_steps_each: int = 5, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SNIPS; returns ``[B, *operator.ishape]``. NFE ``n_steps_each·N``."""
    svd, s = core.get_svd(operator, "snips", like=y), core.levels(sigmas)[:-1]
    sv, ybar, c = svd.s, svd.ybar(y), step_lr / sigma_ref**2
    inv2 = torch.where(sv > 0, (noise_std / torch.where(sv > 0, sv, torch.ones_like(sv))) ** 2,
                       torch.full_like(sv, float("inf")))
    x = core.start(operator, y, s[0], generator, x_init)
    for i, sig in enumerate(s):
        # coordinate-wise step sizes and case masks at this level
        lik_only = sig**2 > inv2
        alpha = torch.where(lik_only, c * (sig**2 - inv2), c * sig**2 * (1 - sig**2 / inv2))
        for _ in range(n_steps_each):
            # prior score and iterate in spectral coordinates
            x0 = core.denoise(denoiser, x, sig)
            xb, score = svd.Vh(x), svd.Vh(x0 - x) / sig**2
            # likelihood-only, score-only (missing, inv2 = ∞) or score + likelihood gradient
            lik = (ybar - xb) / (sig**2 - inv2).abs().clamp_min(1e-30)
            g = torch.where(lik_only, lik, score + torch.where(sv > 0, lik, torch.zeros_like(lik)))
            xb = xb + alpha * g + (2 * alpha).sqrt() * svd.Vh(core.randn(x, generator))
            x = svd.V(xb)
        core.report(callback, i, sig, x, x0)
    return x
