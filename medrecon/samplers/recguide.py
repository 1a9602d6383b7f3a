"""Reconstruction guidance, Ho, Salimans, Gritsenko, Chan, Norouzi & Fleet, "Video Diffusion Models",
NeurIPS 2022, Sec. 3.1 (eq. 7), with the measurement ``y = A x`` in place of the conditioning frames ``x^a``.

The paper adjusts the denoiser, ``x̃₀ = x̂₀ − (w_r α_t/2)·∇_{z_t}‖x^a − x̂₀^a(z_t)‖²`` in VP coordinates
``z_t = α_t x₀ + σ_t ε``, and plugs ``x̃₀`` into the ancestral (DDPM) sampler. In medrecon's VE
coordinates ``x_t = z_t/α_t`` (``α_t = 1/√(1+σ_t²)``, ``σ_ve = σ_t/α_t``) the chain rule gives
``∇_{z_t} = ∇_{x_t}/α_t``, so the α_t cancels exactly::

    x̃₀ = D(x_t, σ_t) − (w_r/2)·∇_{x_t}‖y − A D(x_t, σ_t)‖²        (one forward + one backward pass)

i.e. the gradient of ``σ_t²·log N(y; A x̂₀, (σ_t²/w_r) I)`` — the paper's Gaussian approximation of
``q(x^a | z_t)`` with variance ``σ_t²/(α_t² w_r)`` in VP units. The step to ``σ_s`` is the DDPM posterior
``q(x_s | x_t, x̃₀)``: ``x_s = x̃₀ + (σ_s²/σ_t²)(x_t − x̃₀) + σ_s√(1 − σ_s²/σ_t²)·z`` (:func:`core.ddim_step`, η = 1).

Versus DPS (:mod:`.dps`): DPS corrects the *state* after the ancestral step with
``ζ/‖y − A x̂₀‖ · ∇‖y − A x̂₀‖²`` (a step normalised by the current residual); reconstruction guidance
corrects the *clean estimate* before the step with a fixed weight ``w_r`` (``w_r α_t/2`` in VP units), no
normalisation, so the pull grows with the residual. Near σ → 0 (``∂x̂₀/∂x_t → I``) the correction is a
Landweber step ``x̃₀ = x̂₀ − w_r Aᴴ(A x̂₀ − y)``: stable for ``0 < w_r < 2/‖A‖²``, and for ``w_r = 1`` and an
operator with unit singular values (Cartesian MRI) it is the projection onto ``{Ax = y}``. The paper
used it for autoregressive video extension and temporal super-resolution and found ``w_r > 1`` helps
there. Biased: like DPS it approximates ``p(y | x_t)`` around the point ``x̂₀`` (with a variance that
ignores ``σ_y``), so it does not sample the posterior; ``σ_y`` enters only through the choice of ``w_r``.
NFE N, N backward passes.

We differ in one place, as :mod:`.dps` and :mod:`.mcg` do: the guidance runs on ``A/‖A‖`` and
``y/‖A‖`` (``w_r`` divided by ``‖A‖²``, one power iteration per run, :func:`core.operator_scale`). The
paper's conditioning operator selects frames (``‖A‖ = 1``), and so does Cartesian MRI here (multi-coil
SENSE 0.9993), so nothing changes there; the 23-view 128² Radon transform has ``‖A‖ = 53.3``, far past
the Landweber bound ``w_r < 2/‖A‖²``, and the unscaled step gave NaN on every ct-par-23 held-out slice
(CPU, 50 steps).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from medrecon.samplers import core
from physics.operator import LinearOperator, inner


def _squared_residual(operator: LinearOperator, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-item ‖y − A z‖² (one forward projection)."""
    r = y - operator.forward(z)
    return inner(r, r)


def sample_recguide(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                    noise_std: float = 0.0, generator: core.Generator = None,
                    callback: Optional[Callable[[dict], None]] = None, weight: float = 1.0,
                    x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reconstruction guidance with weight ``w_r = weight``; returns ``[B, *operator.ishape]``."""
    s = core.levels(sigmas)
    x = core.start(operator, y, s[0], generator, x_init)
    w = weight / core.operator_scale(operator, y) ** 2  # w_r on A/‖A‖ (module docstring)
    for i in range(len(s) - 1):
        # denoise with the graph kept; gradient of the squared residual w.r.t. the noisy state
        leaf, x0 = core.denoise_with_grad(denoiser, x, s[i])
        grad = core.vjp(leaf, x0, lambda z: _squared_residual(operator, y, z))
        # adjusted clean estimate x̃₀ = x̂₀ − (w_r/2)∇‖y − A x̂₀‖² (the VP weight w_r α_t/2 in VE form)
        x0 = x0.detach() - 0.5 * w * grad
        # ancestral DDPM step q(x_s | x_t, x̃₀)
        x = core.ddim_step(x0, (x - x0) / s[i], s[i], s[i + 1], 1.0, generator)
        core.report(callback, i, s[i], x, x0)
    return x
