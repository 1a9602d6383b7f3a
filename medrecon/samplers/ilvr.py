"""Iterative Latent Variable Refinement, Choi, Kim, Jeong, Gwon & Yoon, ICCV 2021 (ilvr_adm,
``p_sample_loop_progressive``): ``x_s ← x'_s − φ(x'_s) + φ(q_sample(y_ref, s))``.

For an inverse problem the low-pass ``φ_N = up∘down`` becomes the row-space projector ``A⁺A`` and
``φ(q_sample(y_ref, s))`` becomes ``A⁺(y + σ_s A z)``, so the refinement is the projection of the
ancestral (DDPM, η = 1) step onto the noised measurement — for a low-frequency Cartesian mask exactly
ILVR's filter. Refinement stops below ``σ(range_t)``: it is applied while the step index is below
``(1 − range_t)·N`` (official example: 100 steps, range_t 20 → ``range_t = 0.2``; default 0 =
refine to the end, which reproduces noiseless y). NFE N, no backward.

Noisy y (ours; the paper assumes y = Ax): damped projections, δ = (σ_y/σ)² at the level σ of the last
denoiser input (:func:`.core.project`, :func:`.core.noise_damping`); ``damped=False``: the published step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_ilvr(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                noise_std: float = 0.0, generator: core.Generator = None,
                callback: Optional[Callable[[dict], None]] = None, range_t: float = 0.0, damped: bool = True,
                x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ILVR; returns ``[B, *operator.ishape]``. ``damped``: the noise-aware projection (module docstring)."""
    s = core.levels(sigmas)
    n = len(s) - 1
    sigma_y = noise_std if damped else 0.0
    x = core.start(operator, y, s[0], generator, x_init)
    for i in range(n):
        # unconditional ancestral step
        x0 = core.denoise(denoiser, x, s[i])
        x = core.ddim_step(x0, (x - x0) / s[i], s[i], s[i + 1], 1.0, generator)
        # refinement: replace the row-space component by that of the noised measurement
        if i < (1 - range_t) * n:
            x = core.project(operator, x, core.noised_measurement(operator, y, s[i + 1], x, generator),
                             damping=core.noise_damping(sigma_y, s[i]))
        core.report(callback, i, s[i], x, x0)
    return x
