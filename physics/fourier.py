"""Centred, orthonormal 2-D Fourier transforms (the fastMRI convention).

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes, and
``ifft2c`` its inverse (= its adjoint: the transform is unitary, ‖F‖ = 1). They equal
``np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes), axes, norm="ortho"), axes)`` and
``sigpy.fft(x, axes=(-2, -1))`` / ``sigpy.ifft``.
"""
from __future__ import annotations

import torch

__all__ = ["fft2c", "ifft2c"]

_DIMS = (-2, -1)


def _check(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, received {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} expects at least 2 dimensions [..., H, W], received shape {tuple(x.shape)}")


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes of ``x`` (any leading shape).

    Real input is promoted to complex. Unitary: ``ifft2c(fft2c(x)) == x`` and ⟨Fx, y⟩ = ⟨x, Fᴴy⟩.
    """
    _check(x, "fft2c")
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT over the last two axes; the inverse and adjoint of :func:`fft2c`."""
    _check(k, "ifft2c")
    k = torch.fft.ifftshift(k, dim=_DIMS)
    k = torch.fft.ifft2(k, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)
