"""Denoising Diffusion Null-space Model, Wang, Yu & Zhang, ICLR 2023 (DDNM, ``svd_ddnm.py::ddnm_diffusion``,
``simplified_ddnm_plus``).

Per step: a range–null-space correction of the clean estimate ``x̂₀ = D(x_t, σ_t)`` (below), then
``x_s = x̂₀ᶜ + γ_s (η z + √(1−η²) ε̂)`` with the unconditional ``ε̂ = (x_t − x̂₀)/σ_t`` — DDNM's VP step
``√ᾱ_s x̂₀ + √(1−ᾱ_s)(η z + √(1−η²) ε̂)`` in VE coordinates. Official: 100 steps, η = 0.85, no
time travel (``travel_length = travel_repeat = 1``). NFE N.

Time travel (DDNM §3.3, the official ``get_schedule_jump``; :func:`.schedules.time_travel`): after
every ``travel_length`` levels the walk goes back up that many levels, ``travel_repeat − 1`` times,
re-noising the last denoiser output as the official code does: ``x = x̂₀ + σ z`` at the level reached
(``√ᾱ x̂₀ + √(1 − ᾱ) z`` in VP), with ``x̂₀`` before the range-space correction. The later steps
get more chances to reconcile the measured and the generated parts. NFE
``N + travel_length·(travel_repeat − 1)·⌈(N − travel_length)/travel_length⌉``.

Data correction, by operator:

* **Exact SVD** (single-coil Cartesian MRI, dense operators; ``operator.svd()``):
  ``x̂₀ᶜ = x̂₀ − λ_s A⁺(A x̂₀ − y)`` with the exact ``A⁺``. Noiseless data: λ = 1, γ_s = σ_s (DDNM).
  σ_y > 0 (DDNM⁺, scalar form): ``λ_s = 1`` if ``σ_s ≥ σ_y`` else ``σ_s/σ_y`` and
  ``γ_s = √(σ_s² − (λ_s σ_y)²)`` (the injected measurement noise counted in the level) — exact for
  unit singular values (Cartesian MRI, where ``A⁺`` adds noise of std σ_y to each measured coefficient).
* **No exact SVD** (multi-coil SENSE, CT; singular values far from 1): the scalar DDNM⁺ rule does not
  apply — ``A⁺`` amplifies the noise of a coefficient with singular value ``s`` by ``1/s`` (measured:
  9.9 dB on 8-coil MRI and 20.6 dB on 23-view CT with the scalar rule, below zero-filled / FBP). The
  correction is DDNM⁺'s per-singular-value rule in its smooth form, the damped pseudo-inverse
  ``x̂₀ᶜ = x̂₀ + Aᴴ(AAᴴ + λ_t I)⁻¹(y − A x̂₀) = x̂₀ + (AᴴA + λ_t I)⁻¹Aᴴ(y − A x̂₀)`` with
  ``λ_t = (σ_y/σ_t)²`` — the MAP estimate of ``x₀`` for a Gaussian ``N(x̂₀, σ_t² I)`` around the
  denoiser's output and ``y = A x₀ + N(0, σ_y²)``. On singular value ``s`` it keeps the measured part
  with weight ``s²/(s² + λ_t)`` (→ 1, DDNM's hard replacement, when ``s σ_t ≫ σ_y``; → 0 where
  the measurement is noisier than the current estimate, DDNM⁺'s ``λ < 1`` regime), so no direction
  gains noise above ``σ_t/2``. Noiseless data: ``λ = 0``, the exact ``A⁺`` of DDNM. Solved by CG
  (``cg_iter`` iterations at most, from zero). The measurement noise carried into ``x̂₀ᶜ`` has a
  per-direction std ``sσ_y/(s² + λ_t)``, not a scalar, so it is not subtracted: ``γ_s = σ_s``.
  CG stops when every batch item reaches the relative residual 1e-6, so an item of a batch can differ
  from its single run at that tolerance (exact-SVD path: bit-identical).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon import MedreconError
from medrecon.samplers import core, schedules
from physics.operator import LinearOperator


def sample_ddnm(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                noise_std: float = 0.0, generator: core.Generator = None,
                callback: Optional[Callable[[dict], None]] = None, eta: float = 0.85, cg_iter: int = 50,
                travel_length: int = 1, travel_repeat: int = 1,
                x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DDNM (noiseless) / DDNM⁺ (σ_y > 0; scalar rule with an exact SVD, damped pseudo-inverse by CG
    without one); returns ``[B, *operator.ishape]``. ``cg_iter``: CG iterations of the SVD-free solve;
    ``travel_length``, ``travel_repeat``: time travel (module docstring; 1, 1 = none)."""
    if cg_iter < 1:
        raise MedreconError(f"cg_iter must be ≥ 1, received {cg_iter}")
    if isinstance(travel_length, bool) or isinstance(travel_repeat, bool) or int(travel_length) != travel_length \
            or int(travel_repeat) != travel_repeat or travel_length < 1 or travel_repeat < 1:
        raise MedreconError(f"travel_length and travel_repeat must be integers ≥ 1, received {travel_length}, {travel_repeat}")
    s = core.levels(sigmas)
    x = core.start(operator, y, s[0], generator, x_init)
    exact = core._svd_or_none(operator, x) is not None
    walk = schedules.time_travel(len(s) - 1, int(travel_length), int(travel_repeat))
    x0, step = None, 0
    for i, nxt in zip(walk[:-1], walk[1:]):
        if nxt < i:  # time travel: back up one level, re-noising the last x̂₀ (official DDNM)
            x = x0 + s[nxt] * core.randn(x0, generator)
            continue
        # denoise
        x0 = core.denoise(denoiser, x, s[i])
        eps = (x - x0) / s[i]
        if exact:
            # range-space correction of x̂₀ with the exact A⁺, weight λ_s (scalar DDNM⁺ when σ_y > 0)
            lam = 1.0 if s[i + 1] >= noise_std else s[i + 1] / noise_std
            x0c = core.project(operator, x0, y, lam)
            gamma = max(0.0, s[i + 1] ** 2 - (lam * noise_std) ** 2) ** 0.5
        else:
            # damped pseudo-inverse (AᴴA + λ_t I)⁻¹Aᴴ(y − A x̂₀), λ_t = (σ_y/σ_t)², by CG
            rhs = operator.adjoint(y - operator.forward(x0))
            x0c = x0 + core.solve_damped(operator, rhs, 1.0, core.noise_damping(noise_std, s[i]), iters=cg_iter,
                                           tol=1e-6)
            gamma = s[i + 1]
        # DDNM step with the remaining noise level γ_s
        x = x0c + gamma * (1 - eta**2) ** 0.5 * eps
        if gamma > 0 and eta > 0:
            x = x + gamma * eta * core.randn(x, generator)
        core.report(callback, step, s[i], x, x0)
        step += 1
    return x
