"""The prior interface: a denoiser ``D(x, σ)`` (DESIGN.md, "The prior interface is one function").

Convention (variance exploding, as in EDM / k-diffusion): the input is ``x = x₀ + σ·n`` with
``n = medrecon.noise.randn_like(x₀)`` (unit variance per *real* component, so a complex pixel
carries variance σ² in its real part and σ² in its imaginary part), and ``D(x, σ)`` returns an
estimate of the clean ``x₀`` (for a trained network: the MMSE estimate ``E[x₀ | x]``).

Layouts: MRI images are complex ``[B, 1, H, W]``, CT images real ``[B, 1, H, W]``. ``sigma`` is a
Python float, a 0-d tensor or a ``[B]`` tensor (one level per batch item).

The score of the σ-smoothed prior follows from Tweedie's formula (Robbins 1956; Efron 2011;
Karras et al. 2022, eq. 3): ``∇ₓ log p_σ(x) = (D(x, σ) − x) / σ²``.
"""
from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

import torch

from medrecon import MedreconError

__all__ = ["Denoiser", "Sigma", "sigma_tensor", "sigma_view", "score", "real_dtype"]

Sigma = Union[float, torch.Tensor]


@runtime_checkable
class Denoiser(Protocol):
    """Anything callable as ``D(x, sigma) -> x̂₀`` with ``x̂₀`` shaped and typed like ``x``.

    Plain functions qualify; so do :class:`~medrecon.priors.Prior`,
    :class:`~medrecon.priors.Gaussian` and :class:`~medrecon.priors.GaussianMixture`.
    """

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor: ...


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype matching ``dtype`` (complex64 → float32, complex128 → float64, reals unchanged)."""
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def sigma_tensor(sigma: Sigma, x: torch.Tensor) -> torch.Tensor:
    """Noise levels as a ``[B]`` real tensor on ``x``'s device, in ``x``'s real dtype.

    ``sigma`` may be a float, a tensor with one element (broadcast over the batch) or a tensor with
    ``B = x.shape[0]`` elements (e.g. ``[B]`` or ``[B, 1, 1, 1]``). Negative or non-finite levels,
    and any other element count, raise :class:`~medrecon.MedreconError`.
    """
    if x.ndim < 1:
        raise MedreconError("expected a batched image [B, C, H, W], received a 0-d tensor")
    batch, dtype = x.shape[0], real_dtype(x.dtype)
    # Python numbers go straight to x's precision (a float64 problem must not see float32-rounded σ).
    s = sigma if isinstance(sigma, torch.Tensor) else torch.as_tensor(sigma, dtype=torch.float64)
    s = s.to(x.device)
    if s.is_complex():
        raise MedreconError(f"sigma must be real, received dtype {s.dtype}")
    s = s.to(dtype).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    elif s.numel() != batch:
        raise MedreconError(
            f"sigma must be a float or hold 1 or B={batch} values (x has shape {tuple(x.shape)}), "
            f"received {s.numel()} values"
        )
    # The value check reads the tensor back to the host: skip it for device tensors (no sync per
    # evaluation, and CUDA-graph capture stays possible); floats and CPU tensors are checked.
    if s.device.type == "cpu" and (not bool(torch.isfinite(s).all()) or bool((s < 0).any())):
        raise MedreconError(f"sigma must be finite and ≥ 0, received {s.tolist()}")
    return s


def sigma_view(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` tensor reshaped to ``[B, 1, ..., 1]`` so it broadcasts against ``x``."""
    return sigma.reshape((-1,) + (1,) * (x.ndim - 1))


def score(denoiser: Denoiser, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Score of the σ-smoothed prior via Tweedie: ``∇ₓ log p_σ(x) = (D(x, σ) − x) / σ²`` (σ > 0).

    For complex ``x`` the result is ``∂/∂re + i·∂/∂im`` of ``log p_σ`` (each real component
    carries variance σ², see :mod:`medrecon.noise`).
    """
    s = sigma_tensor(sigma, x)
    if bool((s <= 0).any()):
        raise MedreconError(f"the score needs sigma > 0, received {s.tolist()}")
    return (denoiser(x, s) - x) / sigma_view(s, x) ** 2
