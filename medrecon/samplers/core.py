"""Shared pieces of every sampler: noise, denoiser calls, diffusion steps, data consistency, SVD access.

Conventions (DESIGN.md): VE noise levels σ, ``x = x₀ + σ·n``, a denoiser ``D(x, σ)`` called with σ as
a ``[B]`` tensor of the image's real dtype, score ``(D − x)/σ²``. Images are ``[B, *operator.ishape]``,
complex for complex-domain operators (MRI) and real otherwise (CT). All noise comes from
:func:`medrecon.noise.randn_like` (unit variance per real component).

Randomness: ``generator`` is ``None``, one ``torch.Generator`` (the whole batch drawn in one call), or a
sequence of generators, one per batch item (EDM's per-sample seeding idea). With one generator per
item every draw is made item by item, so a batch of 4 equals 4 single runs with the same generators.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from medrecon import MedreconError
from medrecon.noise import randn_like
from physics.operator import LinearOperator, conjugate_gradient, inner

__all__ = [
    "Generator", "SVD", "randn", "per_item", "template", "start", "denoise", "denoise_with_grad", "vjp", "report",
    "ddim_coeffs", "ddim_step", "reverse_diffusion", "langevin_corrector", "pinv", "project", "noise_damping",
    "solve_damped", "get_svd", "noised_measurement", "levels",
]

Generator = Union[None, torch.Generator, Sequence[torch.Generator]]
Denoiser = Callable[[torch.Tensor, Any], torch.Tensor]


def per_item(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``[B]`` tensor to broadcast against ``like`` (``[B, 1, …, 1]``)."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def randn(like: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Unit-variance (per real component) noise shaped like ``like``; per-item with a generator list."""
    if generator is None or isinstance(generator, torch.Generator):
        return randn_like(like, generator)
    if len(generator) != like.shape[0]:
        raise MedreconError(f"expected one generator per batch item ({like.shape[0]}), received {len(generator)}")
    return torch.cat([randn_like(like[i : i + 1], g) for i, g in enumerate(generator)])


def levels(sigmas: torch.Tensor) -> list[float]:
    """A schedule as Python floats, validated: strictly decreasing, positive, ending in 0."""
    s = [float(v) for v in sigmas]
    if len(s) < 2 or s[-1] != 0.0 or any(a <= b for a, b in zip(s, s[1:])) or s[-2] <= 0:
        raise MedreconError(f"sigmas must be strictly decreasing positive values ending in 0, received {s[:3]}…{s[-3:]}")
    return s


def working_precision(t: torch.Tensor) -> torch.dtype:
    """The real dtype the samplers compute in for data ``t``: float64 for double data, else float32."""
    return torch.float64 if t.dtype in (torch.float64, torch.complex128) else torch.float32


def template(operator: LinearOperator, y: torch.Tensor, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x_init`` (CCDF warm start) or zeros, shaped ``[B, *operator.ishape]``; the dtype follows the
    precision of ``y`` and the operator's input domain (complex for MRI)."""
    real = working_precision(y)
    dtype = {torch.float64: torch.complex128, torch.float32: torch.complex64}[real] if operator.idomain == "complex" else real
    shape = (y.shape[0],) + operator.ishape
    if x_init is None:
        return torch.zeros(shape, dtype=dtype, device=y.device)
    if tuple(x_init.shape) != shape:
        raise MedreconError(f"start_from must have shape {list(shape)}, received {list(x_init.shape)}")
    return x_init.to(device=y.device, dtype=dtype)


def start(operator: LinearOperator, y: torch.Tensor, sigma: float, generator: Generator,
          x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The initial state ``x_init + σ·n`` (``x_init = 0`` unless a CCDF warm start is given)."""
    x = template(operator, y, x_init)
    return x + sigma * randn(x, generator)


def _sigma_tensor(x: torch.Tensor, sigma: float) -> torch.Tensor:
    real = x.real.dtype if x.is_complex() else x.dtype
    return torch.full((x.shape[0],), float(sigma), dtype=real, device=x.device)


def denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``D(x, σ)`` without autograd, σ passed as a ``[B]`` tensor."""
    with torch.no_grad():
        return denoiser(x, _sigma_tensor(x, sigma))


def denoise_with_grad(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_leaf, D(x_leaf, σ))`` with the graph kept, for guidance gradients ``∂D/∂x`` (DPS, ΠGDM, MCG)."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return leaf, denoiser(leaf, _sigma_tensor(x, sigma))


def vjp(leaf: torch.Tensor, out: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Gradient of the per-item objective ``objective(out)`` ``[B]`` w.r.t. ``leaf`` (one backward pass
    through the denoiser). The objective is evaluated here, under ``enable_grad``, so guidance works
    inside a caller's ``torch.no_grad()`` (the reconstruction pipeline runs samplers that way)."""
    with torch.enable_grad():
        (g,) = torch.autograd.grad(objective(out).sum(), leaf)
    return g


def report(callback: Optional[Callable[[dict], None]], i: int, sigma: float, x: torch.Tensor,
           denoised: torch.Tensor) -> None:
    """Progress through the callback only: ``{"i", "sigma", "x", "denoised"}``."""
    if callback is not None:
        callback({"i": i, "sigma": sigma, "x": x, "denoised": denoised})


def ddim_coeffs(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """DDIM (Song, Meng, Ermon 2021, eq. 12) in VE coordinates: ``x_s = x̂₀ + a·ε̂ + c·z`` with
    ``c = η σ_s √(1 − σ_s²/σ_t²)`` and ``a = √(σ_s² − c²)``. η = 1 is the DDPM ancestral step with the
    posterior variance β̃ (the q(x_s | x_t, x̂₀) step); η = 0 is the deterministic DDIM/probability-flow step.
    """
    c = eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
    return math.sqrt(max(0.0, sigma_next**2 - c**2)), c


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, sigma: float, sigma_next: float, eta: float,
              generator: Generator) -> torch.Tensor:
    """One DDIM/DDPM step from the clean estimate ``x̂₀`` and the unit noise direction ``ε̂ = (x_t − x̂₀)/σ_t``."""
    a, c = ddim_coeffs(sigma, sigma_next, eta)
    out = x0 + a * eps
    return out + c * randn(x0, generator) if c > 0 else out


def reverse_diffusion(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
                      generator: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Song et al. 2021 ReverseDiffusionPredictor for the VE-SDE: ``x + (σ² − σ'²)·s + √(σ² − σ'²)·z``.

    Returns ``(x_next, x̂₀)``. To ``σ' = 0`` the step is the noise-free mean ``x + σ²·s = D(x, σ)``.
    """
    x0 = denoise(denoiser, x, sigma)
    var = sigma**2 - sigma_next**2
    mean = x + var / sigma**2 * (x0 - x)
    return (mean + math.sqrt(var) * randn(x, generator) if sigma_next > 0 else mean), x0


def langevin_corrector(denoiser: Denoiser, x: torch.Tensor, sigma: float, snr: float,
                       generator: Generator) -> torch.Tensor:
    """Song et al. 2021 LangevinCorrector (VE, α = 1): ``ε = 2 (snr‖z‖/‖s‖)²``, ``x + ε s + √(2ε) z``.

    Norms are per batch item (the official code averages them over the batch, which couples items).
    """
    score = (denoise(denoiser, x, sigma) - x) / sigma**2
    z = randn(x, generator)
    ratio = inner(z, z).sqrt() / inner(score, score).sqrt().clamp_min(torch.finfo(z.real.dtype).tiny)
    step = per_item(2 * (snr * ratio) ** 2, x)
    return x + step * score + (2 * step).sqrt() * z


# -- the operator's SVD ------------------------------------------------------------------------
@dataclass(frozen=True)
class SVD:
    """An operator's SVD ``A = U Σ Vᴴ`` in "spectral coordinates" of the image's size.

    ``s``: singular values, real ≥ 0, shaped like (or broadcastable to) ``Vh(x)`` including the batch
    axis, zero for the null space; ``Vh``/``V``: the unitary image ↔ spectral maps; ``Uh``: measurement →
    spectral coordinates (``Uᴴy`` placed on the coordinates of the nonzero ``s``, zero elsewhere).
    Single-coil Cartesian MRI ``A = M·F``: ``s = M``, ``Vh = F`` (fft2c), ``V = Fᴴ``, ``Uh = identity``.
    """

    s: torch.Tensor
    Vh: Callable[[torch.Tensor], torch.Tensor]
    V: Callable[[torch.Tensor], torch.Tensor]
    Uh: Callable[[torch.Tensor], torch.Tensor]

    def ybar(self, y: torch.Tensor) -> torch.Tensor:
        """``Σ⁺Uᴴy`` (zero on the null space)."""
        u = self.Uh(y)
        return torch.where(self.s > 0, u / torch.where(self.s > 0, self.s, torch.ones_like(self.s)), torch.zeros_like(u))


def get_svd(operator: LinearOperator, method: str = "this sampler", like: Optional[torch.Tensor] = None) -> SVD:
    """The operator's exact SVD from ``operator.svd()`` — an :class:`SVD`, or any object with ``Vh, V, Uh``
    and ``s`` or ``singular_values`` (:class:`physics.mri.KSpaceSVD`) — with ``s`` cast to the real dtype
    and device of ``like``. Raises :class:`MedreconError` when the operator has none (multi-coil SENSE,
    CT: no cheap exact SVD)."""
    fn = getattr(operator, "svd", None)
    out = fn() if callable(fn) else None
    if out is None:
        raise MedreconError(
            f"{method} needs an exact SVD of the operator (A = UΣVᴴ), but {operator!r} provides none "
            "(only single-coil Cartesian MRI and dense operators do); use ddnm, dds, pigdm or song2022 instead")
    s = getattr(out, "s", None)
    s = getattr(out, "singular_values", None) if s is None else s
    if s is None or not all(callable(getattr(out, k, None)) for k in ("Vh", "V", "Uh")):
        raise MedreconError(f"{operator!r}.svd() must return an object with s (or singular_values), Vh, V, Uh; "
                            f"received {type(out).__name__}")
    if like is not None:
        s = s.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)
    return SVD(s, out.Vh, out.V, out.Uh)


def _svd_or_none(operator: LinearOperator, like: torch.Tensor) -> Optional[SVD]:
    try:
        return get_svd(operator, like=like)
    except MedreconError:
        return None


# -- data consistency --------------------------------------------------------------------------
def operator_scale(operator: LinearOperator, like: torch.Tensor) -> float:
    """``max(‖A‖, 1e-12)`` by power iteration (:meth:`physics.LinearOperator.norm`, deterministic) on
    ``like``'s device in its precision, once per sampler run. The samplers whose
    step sizes or weights were published for ‖A‖ ≤ 1 (DPS, MCG, reconstruction guidance, annealed Langevin,
    RED-diff) run their data terms on ``A/‖A‖`` and ``y/‖A‖``, so they do not depend on the operator's units
    (a 23-view 128² Radon transform has ‖A‖ = 53; tests/samplers/test_behaviour.py checks 50·A)."""
    return max(operator.norm(dtype=working_precision(like), device=like.device), 1e-12)


def pinv(operator: LinearOperator, r: torch.Tensor, *, tol: float = 1e-7, max_iter: int = 100) -> torch.Tensor:
    """``A⁺ r``: exact through the SVD when the operator has one, else CG on the normal equations
    (``operator.pinv``, minimum-norm solution from a zero start)."""
    svd = _svd_or_none(operator, r)
    if svd is not None:
        return svd.V(svd.ybar(r))
    return operator.pinv(r, tol=tol, max_iter=max_iter)


def project(operator: LinearOperator, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0,
            damping: float = 0.0) -> torch.Tensor:
    """``x − w·A⁺(Ax − y)``: w = 1 is the orthogonal projection onto ``{Ax = y}`` (POCS / hard data
    consistency); for masked Fourier it is Song et al. 2022's ``λΛŷ + (1−λ)Λx̂ + (I−Λ)x̂`` merge.

    ``damping`` δ > 0 (see :func:`noise_damping`) gives the noise-aware step ``x − w·(AᴴA + δI)⁻¹Aᴴ(Ax − y)``,
    exact through the SVD, else CG (100 iterations at most): on a singular value ``s`` it moves the
    coefficient by ``s²/(s² + δ)`` of the way, so a measurement noisier than ``x`` is not copied into it.
    The hard step on noisy data copies y's noise into x amplified by ``1/s``: ``song2022``, ``scoresde``,
    ``mcg`` and ``ilvr`` (published for y = Ax) therefore damp it when σ_y > 0 (RESULTS.md: on 8-coil 8×
    real slices at 50 NFE ``song2022`` −3.23 dB with the hard step)."""
    if damping <= 0:
        return x - weight * pinv(operator, operator.forward(x) - y)
    rhs = operator.adjoint(operator.forward(x) - y)
    return x - weight * solve_damped(operator, rhs, 1.0, float(damping), iters=100, tol=1e-7)


def noise_damping(noise_std: float, sigma: float) -> float:
    """``δ = (σ_y/σ)²``, the damping of a noise-aware data step for an estimate at noise level σ and a
    measurement with noise σ_y (0 for noiseless data). With it, ``(AᴴA + δI)⁻¹Aᴴ`` is the MAP correction of
    ``x ~ N(x̂, σ²I)`` by ``y = Ax + N(0, σ_y²I)`` (DDNM⁺'s per-singular-value rule in its smooth form, Wang
    et al. 2023 §3.4): no direction gains measurement noise above σ/2. ``σ = 0`` gives ``inf`` (no step)."""
    if noise_std <= 0:
        return 0.0
    return (noise_std / sigma) ** 2 if sigma > 0 else float("inf")


def noised_measurement(operator: LinearOperator, y: torch.Tensor, sigma: float, like: torch.Tensor,
                       generator: Generator) -> torch.Tensor:
    """``y + σ·A z`` with image-space noise ``z``: a measurement with the noise level of ``x_σ``."""
    return y + sigma * operator.forward(randn(like, generator)) if sigma > 0 else y


def solve_damped(operator: LinearOperator, rhs: torch.Tensor, a: float, b: float, *,
                 x0: Optional[torch.Tensor] = None, iters: int = 100, tol: float = 1e-7) -> torch.Tensor:
    """Solve ``(a·AᴴA + b·I) u = rhs``: exact through the SVD when available, else CG (``iters`` at most,
    from ``x0``). With ``b = 0`` it returns the minimum-norm solution for ``rhs`` in the range of Aᴴ."""
    svd = _svd_or_none(operator, rhs)
    if svd is not None:
        d = a * svd.s**2 + b
        c = svd.Vh(rhs)
        return svd.V(torch.where(d > 0, c / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(c)))
    u, _ = conjugate_gradient(lambda v: a * operator.normal(v) + b * v, rhs, x0, tol=tol, max_iter=iters)
    return u
