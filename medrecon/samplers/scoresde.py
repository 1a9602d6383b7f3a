"""Score-SDE replacement / POCS sampling (Song et al., ICLR 2021; Chung & Ye, MedIA 2022 "score-MRI").

Predictor-corrector on the VE-SDE with a hard projection onto ``{Ax = y}`` after every corrector and
predictor step (score-MRI ``get_pc_fouriercs_fast`` / ``_RI``: ``x ← Re F⁻¹[(1−M)Fx + y]``).
Differences from the official code: the projection is ``x − A⁺(Ax − y)`` for any operator (equal to
the k-space merge for Cartesian MRI, CG pseudo-inverse otherwise); complex images are sampled
jointly (score-MRI passes re/im separately through a real prior); corrector norms are per item;
the last predictor step goes to σ = 0 and returns its noise-free mean (score-MRI returns x̄ too).
Noisy y (ours; the paper assumes y = Ax): damped projections, δ = (σ_y/σ)² at the level σ of the last
denoiser input (:func:`.core.project`, :func:`.core.noise_damping`); ``damped=False``: the published step.
Official: σ_min 0.01, σ_max 378, N = 2000, snr 0.16, one corrector step (NFE 2N).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_scoresde(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                    noise_std: float = 0.0, generator: core.Generator = None,
                    callback: Optional[Callable[[dict], None]] = None, snr: float = 0.16,
                    corrector_steps: int = 1, damped: bool = True,
                    x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sample with POCS data consistency; returns ``[B, *operator.ishape]``. NFE ``(1 + corrector_steps)·N``.
    ``damped``: the noise-aware projection (module docstring)."""
    s = core.levels(sigmas)
    sigma_y = noise_std if damped else 0.0
    # start: noise at σ_0 (or the CCDF warm start) made consistent with y
    x = core.project(operator, core.start(operator, y, s[0], generator, x_init), y,
                     damping=core.noise_damping(sigma_y, s[0]))
    for i in range(len(s) - 1):
        # corrector: Langevin steps at σ_i, each followed by the projection
        for _ in range(corrector_steps):
            x = core.project(operator, core.langevin_corrector(denoiser, x, s[i], snr, generator), y,
                             damping=core.noise_damping(sigma_y, s[i]))
        # predictor: reverse-diffusion step σ_i → σ_{i+1}, then the projection
        x, x0 = core.reverse_diffusion(denoiser, x, s[i], s[i + 1], generator)
        x = core.project(operator, x, y, damping=core.noise_damping(sigma_y, s[i]))
        core.report(callback, i, s[i], x, x0)
    return x
