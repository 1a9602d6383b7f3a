"""CSGM annealed Langevin dynamics, Jalal, Arvinte, Daras, Price, Dimakis & Tamir, NeurIPS 2021
(csgm-mri-langevin, ``main.py::LangevinOptimizer._sample``).

Per noise level σ_t (``η_t = step_lr·(σ_t/σ_L)²``, ``n_steps_each`` steps):
``x ← x + η_t [s(x, σ_t) + Aᴴ(y − Ax)/(σ_y² + γ_t²)] + √(2η_t) z`` with ``γ_t = gamma·σ_t`` — the paper's
likelihood weighting. ``norm_match=True`` is what the official code runs: the likelihood gradient is
rescaled to ``‖s‖·mse`` (``mse = 5``), per item. Differences: the start is ``σ_0·n`` (official:
U[0,1) at level 1156 of 2311), no 99th-percentile rescaling (the prior's scale is the data's), and
the level count is ``steps`` (official: 3 steps per level for levels ≤ 1800, then 3 or 4).
Noise-aware through σ_y; returns the last iterate (no final denoising, as the official code), so
samples carry noise of level σ_L. Official: step_lr 5e-5, σ 232 → 0.0066, NFE 3465–3975.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator, inner


def sample_langevin(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                    noise_std: float = 0.0, generator: core.Generator = None,
                    callback: Optional[Callable[[dict], None]] = None, step_lr: float = 5e-5,
                    n_steps_each: int = 3, gamma: float = 1.0, norm_match: bool = False, mse: float = 5.0,
                    x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Annealed Langevin posterior sampling; returns ``[B, *operator.ishape]``. NFE ``n_steps_each·N``."""
    s = core.levels(sigmas)[:-1]
    x = core.start(operator, y, s[0], generator, x_init)
    for i, sigma in enumerate(s):
        eta = step_lr * (sigma / s[-1]) ** 2
        for _ in range(n_steps_each):
            # prior score at σ_t and the likelihood gradient Aᴴ(y − Ax)
            x0 = core.denoise(denoiser, x, sigma)
            score, lik = (x0 - x) / sigma**2, operator.adjoint(y - operator.forward(x))
            # likelihood weight: 1/(σ_y² + γ_t²) (paper) or the norm-matched ratio (official code)
            if norm_match:
                ratio = inner(score, score).sqrt() / inner(lik, lik).sqrt().clamp_min(1e-30)
                lik = lik * core.per_item(mse * ratio, x)
            else:
                lik = lik / (noise_std**2 + (gamma * sigma) ** 2)
            # Langevin step
            x = x + eta * (score + lik) + (2 * eta) ** 0.5 * core.randn(x, generator)
        core.report(callback, i, sigma, x, x0)
    return x
