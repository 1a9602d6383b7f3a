"""Classical reconstructions over ``physics`` operators: zero-filled, CG least squares (SENSE),
L1-wavelet, total variation (MRI and CT) and filtered back-projection.

Every method is ``fn(operator, y, **options) -> x`` with ``y`` the measurement batch the operator
produces (MRI k-space ``[B, coils, H, W]`` complex64, CT sinogram ``[B, 1, views, detectors]``
float32) and ``x`` the image batch ``[B, 1, H, W]`` (complex for MRI, real for CT). They are
registered by name in :data:`BASELINES` so the CLI can select them with ``--method``.

Regularisation weights are **scale-aware**: the regularised problems are solved for the
normalised operator ``Ã = A / L`` (``L = ‖A‖₂``, by power iteration) and ``ỹ = y / L``, and the
weight is ``λ = weight · s`` where ``s`` is the 99.5th percentile of ``|x₀|`` of the initial image
``x₀`` (zero-filled ``Aᴴy / L²`` or FBP). The same ``weight`` therefore works for data in
arbitrary units (k-space in scanner units, sinograms in HU·pixel).

* ``l1-wavelet``: ``argmin ½‖Ãx − ỹ‖² + λ‖Ψx‖₁`` by FISTA (Beck & Teboulle, SIAM J. Imaging Sci.
  2009) with Ψ PyWavelets' orthonormal ``db4`` transform (``mode="periodization"``), so the proximal
  step is exact soft-thresholding of the coefficients (complex-aware: ``c·max(0, 1 − t/|c|)``).
  The wavelet step runs in numpy on the CPU (one transform pair per iteration).
* ``tv``: ``argmin ½‖Ãx − ỹ‖² + λ‖∇x‖₂,₁`` (isotropic TV, forward differences, Neumann boundary;
  complex images use ``|∇x| = √(|∂ₕx|² + |∂_w x|²)``). CT operators (those with ``fbp``) use
  :func:`tv_ct`, an FBP-preconditioned proximal gradient (the ramp-weighted data term); others PDHG (Chambolle & Pock, J. Math. Imaging
  Vis. 2011, Alg. 1) on ``K = [Ã; ∇]`` with ``‖K‖² ≤ 1 + 8``, ``τ = 0.99/(3r)``, ``σ = 0.99r/3``
  (``r = step_ratio = 1/4``).
* ``sense``: least squares ``argmin ‖Ax − y‖² + δ·L²‖x‖²`` by CG on the normal equations
  (``operator.pinv``; Pruessmann et al., MRM 2001 for the multi-coil SENSE model).
* ``zero-filled``: ``Aᴴy`` (for Cartesian MRI the inverse FFT of zero-filled k-space, coil-combined
  with the maps in the multi-coil case).
* ``fbp``: the operator's own filtered back-projection (``operator.fbp(y, filter=…)``).

Warm starts: ``l1-wavelet`` and ``tv`` start from ``x₀`` (zero-filled ``Aᴴy/L²`` for MRI, FBP where
the operator has one), which makes a few hundred iterations enough on sparse-view CT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from medrecon import MedreconError

__all__ = [
    "zero_filled",
    "sense_cg",
    "l1_wavelet",
    "tv",
    "fbp",
    "tv_ct",
    "tv_prox",
    "preconditioned_radius",
    "gradient",
    "gradient_adjoint",
    "operator_norm",
    "initial_image",
    "Baseline",
    "BASELINES",
    "run",
    "available",
]


def zero_filled(operator, y: torch.Tensor) -> torch.Tensor:
    """``Aᴴ y``: the zero-filled (adjoint) reconstruction; for MRI with a unitary FFT this is the usual one."""
    return operator.adjoint(y)


def fbp(operator, y: torch.Tensor, *, filter: str = "ramp") -> torch.Tensor:
    """Filtered back-projection through ``operator.fbp`` (CT ``physics.Radon``)."""
    if not hasattr(operator, "fbp"):
        raise MedreconError(f"method 'fbp' needs a CT operator with .fbp(), received {operator!r}")
    return operator.fbp(y, filter=filter)


def operator_norm(operator, y: torch.Tensor, *, iterations: int = 20) -> float:
    """``‖A‖₂`` by power iteration (:meth:`physics.LinearOperator.norm`, deterministic) in ``y``'s
    precision, times 1.01 for safety."""
    real = torch.float64 if y.dtype in (torch.float64, torch.complex128) else torch.float32
    return 1.01 * operator.norm(iterations=iterations, dtype=real, device=y.device)


def initial_image(operator, y: torch.Tensor, lipschitz: float) -> torch.Tensor:
    """The warm start ``x₀``: FBP where the operator has one, else ``Aᴴy / L²``."""
    if hasattr(operator, "fbp"):
        return operator.fbp(y)
    return operator.adjoint(y) / lipschitz**2


def _scale(x0: torch.Tensor) -> torch.Tensor:
    """Per-item 99.5th percentile of ``|x₀|`` as ``[B, 1, 1, 1]`` (floored so λ stays positive)."""
    mag = x0.abs().reshape(x0.shape[0], -1).float()
    s = torch.quantile(mag, 0.995, dim=1)
    s = torch.where(s > 0, s, mag.max(dim=1).values.clamp_min(1e-12))
    return s.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.real.dtype if x0.is_complex() else x0.dtype)


def sense_cg(operator, y: torch.Tensor, *, iterations: int = 30, damping: float = 1e-3, tol: float = 1e-6) -> torch.Tensor:
    """CG least squares ``(AᴴA + δ·L²·I) x = Aᴴy`` (``damping`` δ relative to ``L² = ‖A‖²``)."""
    lip = operator_norm(operator, y) if damping > 0 else 1.0
    return operator.pinv(y, damping=damping * lip**2, max_iter=iterations, tol=tol)


# -- total variation ------------------------------------------------------------------------------
def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences over the last two axes: ``[..., H, W] → [..., 2, H, W]`` (0 on the far edge)."""
    g = torch.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def gradient_adjoint(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`gradient` (minus the divergence): ``[..., 2, H, W] → [..., H, W]``."""
    gh, gw = g[..., 0, :, :], g[..., 1, :, :]
    x = torch.zeros_like(gh)
    x[..., :-1, :] -= gh[..., :-1, :]
    x[..., 1:, :] += gh[..., :-1, :]
    x[..., :, :-1] -= gw[..., :, :-1]
    x[..., :, 1:] += gw[..., :, :-1]
    return x


def tv_prox(v: torch.Tensor, mu: torch.Tensor, *, iterations: int = 30, q0: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``argminₓ ½‖x − v‖² + μ‖∇x‖₂,₁`` by Chambolle's dual projection (J. Math. Imaging Vis. 2004):
    ``q ← Π_{|q|≤1}(q + ∇(v − μ∇ᵀq)/(8μ))``, ``x = v − μ∇ᵀq``. ``mu``: ``[B, 1, 1, 1]``. Returns ``(x, q)``
    (``q`` for a warm start of the next call)."""
    q = torch.zeros_like(gradient(v)) if q0 is None else q0
    mu_q = mu.unsqueeze(-3)
    for _ in range(iterations):
        q = q + gradient(v - mu * gradient_adjoint(q)) / (8.0 * mu_q)
        q = q / torch.clamp_min(q.abs().pow(2).sum(dim=-3, keepdim=True).sqrt(), 1.0)
    return v - mu * gradient_adjoint(q), q


def tv(
    operator,
    y: torch.Tensor,
    *,
    weight: Optional[float] = None,
    iterations: Optional[int] = None,
    step_ratio: float = 0.25,
    lipschitz: Optional[float] = None,
    x0: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[dict], None]] = None,
) -> torch.Tensor:
    """Isotropic-TV regularised least squares (module docstring); ``λ = weight · s(x₀)``.

    Operators without ``fbp`` (MRI): PDHG on ``½‖Ãx − ỹ‖² + λ‖∇x‖₂,₁`` (defaults: weight 0.01,
    300 iterations). Operators with ``fbp`` (CT): :func:`tv_ct` (defaults: weight 0.01, 40 iterations).
    """
    if hasattr(operator, "fbp"):
        return tv_ct(operator, y, weight=0.01 if weight is None else weight, iterations=iterations or 40,
                     x0=x0, callback=callback)
    weight = 0.01 if weight is None else weight
    iterations = iterations or 300
    lip = lipschitz or operator_norm(operator, y)
    yn = y / lip
    x = (initial_image(operator, y, lip) if x0 is None else x0).clone()
    lam = weight * _scale(x)
    # τσ‖K‖² = 0.99² < 1 with ‖K‖² ≤ 9; the primal step is favoured (ratio 1/4), which converged
    # 3x faster than τ = σ on 4x-undersampled phantoms (34.7 dB in 300 vs 1000 iterations).
    norm_k = math.sqrt(1.0 + 8.0)
    tau, sigma = 0.99 / (norm_k * step_ratio), 0.99 * step_ratio / norm_k
    x_bar = x.clone()
    p = torch.zeros_like(yn)  # dual of the data term
    q = torch.zeros_like(gradient(x))  # dual of the TV term
    lam_q = lam.unsqueeze(-3)
    for it in range(iterations):
        p = (p + sigma * (operator.forward(x_bar) / lip - yn)) / (1.0 + sigma)
        q = q + sigma * gradient(x_bar)
        mag = q.abs().pow(2).sum(dim=-3, keepdim=True).sqrt()
        q = q / torch.maximum(mag / lam_q, torch.ones_like(mag))
        x_new = x - tau * (operator.adjoint(p) / lip + gradient_adjoint(q))
        x_bar = 2 * x_new - x
        x = x_new
        if callback is not None:
            callback({"i": it, "iterations": iterations, "x": x})
    return x


def preconditioned_radius(operator, like: torch.Tensor, *, iterations: int = 8) -> float:
    """Spectral radius of ``FBP∘A`` by power iteration (fixed-seed start on ``like``'s device), times 1.05;
    the largest over the batch when the operator holds per-item state (``operator.batch``)."""
    g = torch.Generator(device=like.device).manual_seed(0)
    x = torch.randn(like[: operator.batch or 1].shape, generator=g, dtype=like.dtype, device=like.device)
    rho = torch.ones(x.shape[0], dtype=torch.float64)
    for _ in range(iterations):
        z = operator.fbp(operator.forward(x))
        zn = z.reshape(z.shape[0], -1).norm(dim=1).double().cpu()
        rho = zn / x.reshape(x.shape[0], -1).norm(dim=1).double().cpu()
        x = z / zn.clamp_min(1e-30).to(z.device, z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
    return 1.05 * max(float(rho.max()), 1.0)


def tv_ct(
    operator,
    y: torch.Tensor,
    *,
    weight: float = 0.01,
    iterations: int = 40,
    inner: int = 30,
    step: Optional[float] = None,
    x0: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[dict], None]] = None,
) -> torch.Tensor:
    """TV for CT by FBP-preconditioned proximal gradient:
    ``x ← prox_{tλTV}(x − t·FBP(Ax − y))`` from ``x₀ = FBP(y)``, the TV prox by :func:`tv_prox`.
    The step ``t = 1/ρ`` with ``ρ`` the spectral radius of ``FBP∘A`` (:func:`preconditioned_radius`;
    ≈ 2.6 for 60 parallel views at 128², where ``t = 1`` diverges).

    FBP is a left approximate inverse of the Radon transform (``FBP∘A ≈ I`` on the sampled
    frequencies), so this is a preconditioned gradient step on ``½‖Ax − y‖²_W`` with ``W`` the ramp
    filter (``Aᴴ W ≈ FBP``) — it converges in tens of iterations, where plain gradient or PDHG on
    ``‖Ax − y‖²`` needs thousands because ``AᴴA`` acts like ``1/|ω|``. Each iteration costs one
    projection and one FBP. ``λ = weight · s(x₀)``.
    """
    x = operator.fbp(y) if x0 is None else x0.clone()
    step = 1.0 / preconditioned_radius(operator, x) if step is None else float(step)
    lam = weight * _scale(x)
    q = None
    for it in range(iterations):
        v = x - step * operator.fbp(operator.forward(x) - y)
        x, q = tv_prox(v, step * lam, iterations=inner, q0=q)
        if callback is not None:
            callback({"i": it, "iterations": iterations, "x": x})
    return x


# -- L1 wavelet -----------------------------------------------------------------------------------
def _wavelet_levels(shape: tuple[int, int], wavelet: str, max_levels: int = 4) -> int:
    import pywt

    levels = 0
    for lv in range(1, max_levels + 1):
        if shape[0] % (2**lv) or shape[1] % (2**lv) or pywt.dwt_max_level(min(shape), wavelet) < lv:
            break
        levels = lv
    if levels == 0:
        raise MedreconError(f"l1-wavelet needs even image sizes for an orthonormal wavelet transform, received {shape}")
    return levels


def _wavelet_shrink(x: np.ndarray, threshold: np.ndarray, wavelet: str, levels: int) -> np.ndarray:
    """``Ψᴴ soft(Ψx, t)`` per image in ``x`` ``[B, C, H, W]`` (exact prox of ``t‖Ψ·‖₁`` for orthonormal Ψ)."""
    import pywt

    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            coeffs = pywt.wavedec2(x[b, c], wavelet, mode="periodization", level=levels)
            arr, slices = pywt.coeffs_to_array(coeffs)
            mag = np.abs(arr)
            t = threshold[b]
            shrink = np.maximum(0.0, 1.0 - t / np.maximum(mag, 1e-30))
            approx = slices[0]
            shrink[approx] = 1.0  # the coarse approximation band is not penalised
            arr = arr * shrink
            rec = pywt.waverec2(pywt.array_to_coeffs(arr, slices, output_format="wavedec2"), wavelet, mode="periodization")
            out[b, c] = rec[: x.shape[2], : x.shape[3]]
    return out


def l1_wavelet(
    operator,
    y: torch.Tensor,
    *,
    weight: float = 0.005,
    iterations: int = 150,
    wavelet: str = "db4",
    lipschitz: Optional[float] = None,
    x0: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[dict], None]] = None,
) -> torch.Tensor:
    """L1-wavelet regularised least squares by FISTA (module docstring); ``λ = weight · s(x₀)``."""
    lip = lipschitz or operator_norm(operator, y)
    yn = y / lip
    x = (initial_image(operator, y, lip) if x0 is None else x0).clone()
    levels = _wavelet_levels(tuple(x.shape[-2:]), wavelet)
    lam = (weight * _scale(x)).reshape(-1).cpu().numpy()
    z, t = x.clone(), 1.0
    for it in range(iterations):
        grad = operator.adjoint(operator.forward(z) / lip - yn) / lip
        v = (z - grad).cpu().numpy()
        x_new = torch.from_numpy(_wavelet_shrink(v, lam, wavelet, levels)).to(device=x.device, dtype=x.dtype)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if callback is not None:
            callback({"i": it, "iterations": iterations, "x": x})
    return x


# -- registry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """A classical method: ``fn(operator, y, **options)``, the modalities it supports, a one-line summary."""

    fn: Callable[..., torch.Tensor]
    modalities: tuple[str, ...]
    summary: str


BASELINES: dict[str, Baseline] = {
    "zero-filled": Baseline(zero_filled, ("mri",), "adjoint Aᴴy (inverse FFT of zero-filled k-space, coil-combined)"),
    "sense": Baseline(sense_cg, ("mri", "ct"), "least squares by CG on the normal equations (SENSE for multi-coil)"),
    "l1-wavelet": Baseline(l1_wavelet, ("mri", "ct"), "FISTA, λ‖Ψx‖₁ with orthonormal db4 wavelets (PyWavelets)"),
    "tv": Baseline(tv, ("mri", "ct"), "PDHG, isotropic total variation λ‖∇x‖₂,₁"),
    "fbp": Baseline(fbp, ("ct",), "filtered back-projection (ramp filter)"),
}


def available() -> list[str]:
    """Names of the classical methods."""
    return list(BASELINES)


def run(name: str, operator, y: torch.Tensor, *, modality: Optional[str] = None, **options) -> torch.Tensor:
    """Run the baseline ``name`` (a key of :data:`BASELINES`); ``modality`` ("mri"/"ct") is checked when given."""
    if name not in BASELINES:
        raise MedreconError(f"unknown classical method {name!r}; available: {', '.join(BASELINES)}")
    b = BASELINES[name]
    if modality is not None and modality not in b.modalities:
        raise MedreconError(f"method {name!r} does not apply to {modality.upper()} data (supports: {', '.join(b.modalities)})")
    with torch.no_grad():
        return b.fn(operator, y, **options)
