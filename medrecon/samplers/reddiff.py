"""RED-diff, Mardani, Song, Kautz & Vahdat, ICLR 2024 (NVlabs/RED-diff, ``algos/reddiff.py``).

Variational posterior approximation by a point mass δ_μ: ``μ ← A⁺y`` (or the CCDF warm start), then
for each level σ_t (descending) one Adam step (betas 0.9, 0.99) on
``λσ_t·mean((ε̂ − ε)·μ) + v·mean(|y − Aμ|²)/2`` with ``x_t = μ + σ_t ε``, ``ε̂ = (x_t − D(x_t, σ_t))/σ_t``
detached (no backward through the denoiser; ``λσ_t`` is the code's ``√(1−ᾱ)/√ᾱ`` "linear" weight).
The means are per item and summed over the batch (the code averages over the batch; Adam is
invariant to that scale). Returns μ: an estimate, not a sample (zero variance by design).
Noise-aware through the observation weight v. Official defaults: λ = 0.25, v = 1, lr 0.1, 50 steps.

We differ in the units, as :mod:`.dps`: the data term runs on ``A/‖A‖`` and ``y/‖A‖`` (one power
iteration per run). The official λ and v balance the two terms for the paper's operators of norm ≤ 1
(inpainting, deblurring; Cartesian MRI here, unchanged); on the 23-view 128² Radon transform
(``‖A‖ = 53.3``) the unscaled data term weighs 2841× more and the regulariser has no say.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator, inner


def sample_reddiff(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                   noise_std: float = 0.0, generator: core.Generator = None,
                   callback: Optional[Callable[[dict], None]] = None, lam: float = 0.25, obs_weight: float = 1.0,
                   lr: float = 0.1, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RED-diff; returns the optimised ``μ`` of shape ``[B, *operator.ishape]``. NFE N, no backward."""
    s = core.levels(sigmas)[:-1]
    template = core.template(operator, y, x_init)
    # initialise μ at the pseudo-inverse (or the warm start) and set up Adam
    mu = (core.pinv(operator, y).to(template.dtype) if x_init is None else template).clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99))
    n_img, n_meas = mu[0].numel(), y[0].numel()
    data_weight = obs_weight / core.operator_scale(operator, y) ** 2  # v on A/‖A‖ (module docstring)
    for i, sigma in enumerate(s):
        # noise μ to level σ_t and denoise (no graph through the denoiser)
        eps = core.randn(mu.detach(), generator)
        x0 = core.denoise(denoiser, mu.detach() + sigma * eps, sigma)
        eps_hat = (mu.detach() + sigma * eps - x0) / sigma
        # regulariser λσ_t(ε̂ − ε)·μ plus the data fidelity, one Adam step
        with torch.enable_grad():
            r = y - operator.forward(mu)
            loss = lam * sigma * inner(eps_hat - eps, mu) / n_img + data_weight * inner(r, r) / (2 * n_meas)
            opt.zero_grad()
            loss.sum().backward()
        opt.step()
        core.report(callback, i, sigma, mu.detach(), x0)
    return mu.detach()
