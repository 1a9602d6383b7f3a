"""Decomposed Diffusion Sampler, Chung, Lee & Ye, ICLR 2024 (HJ-harry/DDS, ``solver_2d.py::dds``).

Per step: ``x̂₀ = D(x_t, σ_t)``; a few CG iterations (from x̂₀) on ``(I + γAᴴA) u = x̂₀ + γAᴴy`` — the
proximal data step on the clean manifold's tangent space, early-stopped CG acting as the noise
regulariser; then the DDIM step (η) from u with the unconditional ε̂. Works with any operator (CG
only; with an SVD the system is solved exactly in one shot, which equals CG run to convergence).
Differences: VE coordinates. Not a posterior sampler: it targets fast, data-consistent estimates.
Official MRI defaults [recall]: 50 steps, η = 0.85, γ = 5, CG 5 iterations, σ_y 0.01. NFE N.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_dds(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
               noise_std: float = 0.0, generator: core.Generator = None,
               callback: Optional[Callable[[dict], None]] = None, gamma: float = 5.0, cg_iter: int = 5,
               eta: float = 0.85, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDS; returns ``[B, *operator.ishape]``."""
    s = core.levels(sigmas)
    x = core.start(operator, y, s[0], generator, x_init)
    aty = operator.adjoint(y)
    for i in range(len(s) - 1):
        # denoise
        x0 = core.denoise(denoiser, x, s[i])
        # data step: CG on (I + γAᴴA) u = x̂₀ + γAᴴy started at x̂₀
        u = core.solve_damped(operator, x0 + gamma * aty, gamma, 1.0, x0=x0, iters=cg_iter, tol=0.0)
        # DDIM step from the data-consistent estimate
        x = core.ddim_step(u, (x - x0) / s[i], s[i], s[i + 1], eta, generator)
        core.report(callback, i, s[i], x, u)
    return x
