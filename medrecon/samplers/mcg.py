"""Manifold Constrained Gradients, Chung, Sim, Ryu & Ye, NeurIPS 2022 (MCG_diffusion,
``gaussian_diffusion.py::p_sample_loop_progressive`` with ``sample_method='MCG'``).

Per step: DPS-style gradient ``g = ∇_{x_t}‖y − A x̂₀‖`` (VE conversion factor as in :mod:`.dps`),
restricted to the null space (``g − A⁺Ag``: the code's ``(1 − m)⊙g`` for inpainting, "keep the
unmeasured-view component" for CT), subtracted from the ancestral step, then the projection onto the
noised measurement ``y + σ_s A z`` (``m⊙q_sample(y, s)``; the last step projects onto y itself).
Differences: the generic projection ``x − A⁺(Ax − y_s)`` replaces the mask merge / CT Kaczmarz step
(λ_i = 1), and α is divided by ‖A‖ as DPS's ζ is (:func:`.core.operator_scale`; no change for MRI,
‖A‖ = 1). Official: 1000 steps, α = 1.

Noisy y (ours; the paper assumes y = Ax): damped projections, δ = (σ_y/σ)² at the level σ of the last
denoiser input (:func:`.core.project`, :func:`.core.noise_damping`); ``damped=False``: the published step.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from medrecon.samplers import core
from medrecon.samplers.dps import residual_gradient
from physics.operator import LinearOperator


def sample_mcg(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
               noise_std: float = 0.0, generator: core.Generator = None,
               callback: Optional[Callable[[dict], None]] = None, alpha: float = 1.0,
               damped: bool = True, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MCG; returns ``[B, *operator.ishape]``. NFE N, N backward passes. ``damped``: the noise-aware
    projection (module docstring)."""
    s = core.levels(sigmas)
    sigma_y = noise_std if damped else 0.0
    x = core.start(operator, y, s[0], generator, x_init)
    alpha = alpha / core.operator_scale(operator, y)  # as DPS: the step does not depend on the operator's units
    for i in range(len(s) - 1):
        # manifold-constrained gradient: residual-norm gradient restricted to the null space of A
        x0, grad = residual_gradient(denoiser, operator, y, x, s[i])
        grad = grad - core.pinv(operator, operator.forward(grad))
        # ancestral step minus the gradient, then projection onto the noised measurement at σ_{i+1}
        x = core.ddim_step(x0, (x - x0) / s[i], s[i], s[i + 1], 1.0, generator)
        x = x - alpha * math.sqrt((1 + s[i] ** 2) * (1 + s[i + 1] ** 2)) * grad
        x = core.project(operator, x, core.noised_measurement(operator, y, s[i + 1], x, generator),
                         damping=core.noise_damping(sigma_y, s[i]))
        core.report(callback, i, s[i], x, x0)
    return x
