"""Song, Shen, Xing & Ermon, "Solving inverse problems in medical imaging with score-based generative
models", ICLR 2022 (score_inverse_problems, ``cs.py::get_projection_sampler``).

Each iteration: λ-weighted projection onto the *noised* measurement ``ŷ_t = y + σ_t·A z``
(``x ← x − λA⁺(Ax − ŷ_t)``; for Cartesian MRI exactly the paper's ``λΛŷ + (1−λ)Λx̂ + (I−Λ)x̂``), a
Langevin corrector, a fresh projection, a reverse-diffusion predictor; finally a hard (λ = 1)
projection onto the clean ``y``. Differences: the transform T is the operator itself with a CG/SVD
pseudo-inverse (the paper's CT variant merges in the Fourier-slice domain of a zero-padded,
4×-expanded image); complex images are kept complex (the paper takes the real part); the last
predictor step ends at σ = 0 with its noise-free mean instead of re-noising to σ_min and adding a
Tweedie step (NFE 2N, official 2N+1); corrector norms per item (official: batch-averaged).
Noisy y (ours; the paper assumes y = Ax): damped projections, δ = (σ_y/σ)² at the level σ of the last
denoiser input, the final one at the last positive level (:func:`.core.project`, :func:`.core.noise_damping`);
``damped=False``: the published step.
Official (BraTS): σ_max 128, σ_min 0.01, N = 1000, λ = 1, snr 0.517; LIDC CT λ = 0.841, snr 0.246.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator


def sample_song2022(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                    noise_std: float = 0.0, generator: core.Generator = None,
                    callback: Optional[Callable[[dict], None]] = None, snr: float = 0.517, lam: float = 1.0,
                    damped: bool = True, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Projection predictor-corrector sampler; returns ``[B, *operator.ishape]``. NFE 2N. ``damped``: the
    noise-aware projection (module docstring)."""
    s = core.levels(sigmas)
    sigma_y = noise_std if damped else 0.0
    x = core.start(operator, y, s[0], generator, x_init)
    for i in range(len(s) - 1):
        # λ-projection onto y + σ_i A z, then the Langevin corrector
        x = core.project(operator, x, core.noised_measurement(operator, y, s[i], x, generator), lam,
                         core.noise_damping(sigma_y, s[i]))
        x = core.langevin_corrector(denoiser, x, s[i], snr, generator)
        # fresh λ-projection, then the reverse-diffusion predictor σ_i → σ_{i+1}
        x = core.project(operator, x, core.noised_measurement(operator, y, s[i], x, generator), lam,
                         core.noise_damping(sigma_y, s[i]))
        x, x0 = core.reverse_diffusion(denoiser, x, s[i], s[i + 1], generator)
        core.report(callback, i, s[i], x, x0)
    # final projection onto the clean measurement (hard for noiseless y)
    return core.project(operator, x, y, damping=core.noise_damping(sigma_y, s[-2]))
