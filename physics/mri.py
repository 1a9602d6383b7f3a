"""Cartesian MRI forward models: single-coil ``A = M F`` and multi-coil SENSE ``A = M F S``.

Math and layout
---------------
* ``x``: image ``[B, 1, H, W]``, complex (complex64 or complex128).
* ``F``: :func:`physics.fft2c`, the centred orthonormal 2-D FFT over ``(H, W)`` (‖F‖ = 1, Fᴴ = F⁻¹).
* ``S``: coil sensitivity maps ``[B or 1, coils, H, W]`` complex; ``(S x)_c = S_c ⊙ x``.
* ``M``: the sampling mask, a real, non-negative, diagonal weight on k-space: a column mask
  ``[B or 1, W]`` (one weight per phase-encode column, shared by all rows) or a 2-D mask
  ``[B or 1, H, W]``. Binary (bool or 0/1) or general weights; ``A = M F S`` applies it **once**.
* ``k = A x``: k-space ``[B, 1, H, W]`` (single coil) or ``[B, coils, H, W]`` (multi-coil), zero where
  the mask is zero.

Adjoint and normal operator::

    Aᴴ k   = Σ_c conj(S_c) ⊙ Fᴴ(M k_c)
    AᴴA x  = Σ_c conj(S_c) ⊙ Fᴴ(M² F(S_c x))

For a column mask the row transform cancels in ``Fᴴ M² F`` (``F = F_H ⊗ F_W`` and ``M = I ⊗ diag(m)``),
so :meth:`normal` applies only 1-D FFTs along W: about half the work of ``adjoint(forward(x))``.

With ``Σ_c |S_c|² = 1`` per pixel and at least one sampled entry of weight 1, ``‖A‖ = 1``.

Relation to sigpy: ``sigpy.mri.linop.Sense(maps, weights=w)`` is ``√w · F · S`` (sigpy folds its
weights in as a square root, ``sigpy/mri/linop.py``), so ``MultiCoilMRI(m, maps)`` equals
``Sense(maps, weights=m²)``; for a binary mask the two conventions coincide.

Operator state (mask, maps) is cast lazily to each input's precision and device (cached), so
float64 inputs run entirely in double precision.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from physics.fourier import fft2c, ifft2c
from physics.kernels import use_triton
from physics.operator import LinearOperator

__all__ = ["SingleCoilMRI", "MultiCoilMRI", "KSpaceSVD"]

_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _fft_w(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 1-D FFT along the last axis (the W factor of :func:`fft2c`)."""
    return torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(x, dim=-1), dim=-1, norm="ortho"), dim=-1)


def _ifft_w(k: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(k, dim=-1), dim=-1, norm="ortho"), dim=-1)


def _prepare_mask(mask: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a mask and return it as a real tensor ``[Bm, 1, H or 1, W]`` (bool/int → float32)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: mask must be a torch.Tensor, received {type(mask).__name__}")
    if mask.is_complex():
        raise ValueError(f"{name}: expected a real mask (bool, 0/1 or non-negative weights), received {mask.dtype}")
    if mask.ndim == 1:
        mask = mask[None]
    if mask.ndim not in (2, 3):
        raise ValueError(
            f"{name}: expected a mask of shape [B or 1, W] (column mask) or [B or 1, H, W], "
            f"received {tuple(mask.shape)}"
        )
    if not mask.is_floating_point():
        mask = mask.to(torch.float32)
    if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()):
        raise ValueError(f"{name}: mask weights must be finite and non-negative")
    return mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]


def _check_mask_size(mask4: torch.Tensor, mask: torch.Tensor, hw: tuple[int, int], source: str, name: str) -> None:
    h, w = hw
    if mask4.shape[-1] != w or mask4.shape[-2] not in (1, h):
        expected = f"[B or 1, {w}] or [B or 1, {h}, {w}]"
        raise ValueError(
            f"{name}: mask width does not match the image/k-space width: expected a mask of shape "
            f"{expected} ({source}), received {tuple(mask.shape)}"
        )


def _joint_batch(name: str, **sizes: int) -> Optional[int]:
    per_item = {k: v for k, v in sizes.items() if v != 1}
    if len(set(per_item.values())) > 1:
        raise ValueError(f"{name}: per-item state must share one batch size, received {per_item}")
    return next(iter(per_item.values()), None)


@dataclass(frozen=True)
class KSpaceSVD:
    """The exact SVD ``A = U Σ Vᴴ`` of a single-coil Cartesian operator ``A = M F``.

    * ``Vᴴ = F`` (:func:`physics.fft2c`), so the spectral coordinates of an image are its k-space;
      ``V = Fᴴ`` (:func:`physics.ifft2c`). V is unitary.
    * ``Σ = M``: :attr:`singular_values` is the mask, a real tensor ``[Bm, 1, H or 1, W]`` broadcastable
      to k-space ``[B, 1, H, W]`` (1 on sampled entries of a binary mask, 0 elsewhere).
    * ``U = I``: measurements already live in the spectral coordinates; entries where Σ = 0 are
      always zero in ``A x``.

    So ``A x = U(Σ ⊙ Vh(x))``, ``Aᴴ y = V(Σ ⊙ Uh(y))`` and the pseudo-inverse is
    ``A⁺ y = V(Σ⁺ ⊙ Uh(y))`` with ``Σ⁺ = 1/Σ`` where Σ > 0 and 0 elsewhere (:meth:`pinv`). This is the
    form SVD-based samplers use (DDRM: Kawar et al., NeurIPS 2022, Sec. 3; DDNM: Wang et al., ICLR 2023).
    """

    singular_values: torch.Tensor

    @staticmethod
    def Vh(x: torch.Tensor) -> torch.Tensor:
        """Image → spectral coordinates: ``F x``."""
        return fft2c(x)

    @staticmethod
    def V(z: torch.Tensor) -> torch.Tensor:
        """Spectral coordinates → image: ``Fᴴ z``."""
        return ifft2c(z)

    @staticmethod
    def Uh(y: torch.Tensor) -> torch.Tensor:
        """Measurement → spectral coordinates (identity)."""
        return y

    @staticmethod
    def U(z: torch.Tensor) -> torch.Tensor:
        """Spectral coordinates → measurement (identity)."""
        return z

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A⁺ y = Fᴴ(Σ⁺ ⊙ y)``: the minimum-norm least-squares image."""
        s = self.singular_values.to(device=y.device, dtype=y.real.dtype)
        inv = torch.where(s > 0, 1.0 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(inv * self.Uh(y))


class _CachedState:
    """Operator tensors cast on first use to a given (real dtype, device) and kept."""

    def __init__(self, **tensors: Optional[torch.Tensor]) -> None:
        self._tensors = tensors
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, Optional[torch.Tensor]]] = {}

    def get(self, like: torch.Tensor) -> dict[str, Optional[torch.Tensor]]:
        real = like.real.dtype if like.is_complex() else like.dtype
        key = (real, like.device)
        if key not in self._cache:
            cast = {}
            for name, t in self._tensors.items():
                if t is None:
                    cast[name] = None
                else:
                    dtype = _COMPLEX_OF[real] if t.is_complex() else real
                    cast[name] = t.to(device=like.device, dtype=dtype)
            if cast.get("mask") is not None:
                cast["mask_sq"] = cast["mask"].square()
            self._cache[key] = cast
        return self._cache[key]


class SingleCoilMRI(LinearOperator):
    """Single-coil Cartesian MRI ``k = M ⊙ fft2c(x)``: ``[B, 1, H, W] → [B, 1, H, W]``, complex.

    Args:
        mask: ``[B or 1, W]`` column mask (or ``[W]``) or ``[B or 1, H, W]``; bool, 0/1 or non-negative
            real weights. A leading size B > 1 makes the mask per batch item (``op.batch = B``).
        shape: the image size ``(H, W)``. Required for a column mask (whose H is otherwise unknown);
            checked against a 2-D mask.

    ``‖A‖ = max(mask)`` (1 for any binary mask that samples something). See the module docstring for
    the adjoint, the normal operator and the relation to sigpy, and :meth:`svd` for the exact SVD.
    """

    def __init__(self, mask: torch.Tensor, shape: Optional[Sequence[int]] = None) -> None:
        name = type(self).__name__
        mask4 = _prepare_mask(mask, name)
        if shape is None:
            if mask4.shape[-2] == 1 and mask.ndim != 3:
                raise ValueError(
                    f"{name}: a column mask of shape {tuple(mask.shape)} does not fix the image height; "
                    f"pass shape=(H, {mask4.shape[-1]})"
                )
            shape = tuple(mask4.shape[-2:])
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"{name}: expected shape=(H, W) with positive sizes, received {shape}")
        _check_mask_size(mask4, mask, shape, f"shape {shape}", name)
        super().__init__((1, *shape), (1, *shape), idomain="complex", batch=mask4.shape[0])
        self._mask4 = mask4
        self._state = _CachedState(mask=mask4)

    @property
    def mask(self) -> torch.Tensor:
        """The mask as a real tensor ``[Bm, 1, H or 1, W]`` (broadcastable to k-space)."""
        return self._mask4

    @property
    def maps(self) -> None:
        """Single coil: no sensitivity maps (``S = I``)."""
        return None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._state.get(x)["mask"] * fft2c(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(self._state.get(y)["mask"] * y)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        m2 = self._state.get(x)["mask_sq"]
        if m2.shape[-2] == 1:  # column mask: Fᴴ M² F = I_H ⊗ F_Wᴴ diag(m²) F_W
            return _ifft_w(m2 * _fft_w(x))
        return ifft2c(m2 * fft2c(x))

    def svd(self, like: Optional[torch.Tensor] = None) -> KSpaceSVD:
        """The exact SVD ``A = U Σ Vᴴ`` with ``U = I``, ``Σ = mask``, ``Vᴴ = fft2c`` (:class:`KSpaceSVD`).

        ``like`` (optional) selects the real dtype and device of the singular values.
        """
        s = self._mask4 if like is None else self._state.get(like)["mask"]
        return KSpaceSVD(singular_values=s)


class MultiCoilMRI(LinearOperator):
    """Multi-coil Cartesian SENSE ``k_c = M ⊙ fft2c(S_c ⊙ x)``: ``[B, 1, H, W] → [B, coils, H, W]``.

    Args:
        mask: ``[B or 1, W]`` column mask (or ``[W]``) or ``[B or 1, H, W]``; bool, 0/1 or non-negative
            real weights, applied once (sigpy's ``Sense`` takes ``weights = mask²``).
        maps: coil sensitivities ``[B or 1, coils, H, W]``, complex64 or complex128. With
            ``Σ_c |S_c|² = 1`` per pixel (e.g. :func:`physics.coils.birdcage`) and a binary mask,
            ``‖A‖ = 1``.

    A leading size B > 1 of the mask or the maps makes the state per batch item (``op.batch = B``;
    both must agree when both are per item). Reference: K. P. Pruessmann et al., "SENSE: sensitivity
    encoding for fast MRI", Magn. Reson. Med. 42:952–962 (1999).
    """

    def __init__(self, mask: torch.Tensor, maps: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(maps, torch.Tensor):
            raise TypeError(f"{name}: maps must be a torch.Tensor, received {type(maps).__name__}")
        if maps.ndim != 4:
            raise ValueError(f"{name}: expected maps of shape [B or 1, coils, H, W], received {tuple(maps.shape)}")
        if not maps.is_complex():
            raise ValueError(
                f"{name}: expected complex maps (complex64/complex128) of shape [B or 1, coils, H, W], "
                f"received {maps.dtype} {tuple(maps.shape)}"
            )
        mask4 = _prepare_mask(mask, name)
        coils, h, w = maps.shape[1:]
        _check_mask_size(mask4, mask, (h, w), f"maps {tuple(maps.shape)}", name)
        batch = _joint_batch(name, mask=mask4.shape[0], maps=maps.shape[0])
        super().__init__((1, h, w), (coils, h, w), idomain="complex", batch=batch)
        self._mask4, self._maps = mask4, maps
        self._state = _CachedState(mask=mask4, maps=maps)

    @property
    def mask(self) -> torch.Tensor:
        """The mask as a real tensor ``[Bm, 1, H or 1, W]`` (broadcastable to k-space)."""
        return self._mask4

    @property
    def maps(self) -> torch.Tensor:
        """The coil sensitivities ``[B or 1, coils, H, W]`` as given."""
        return self._maps

    @property
    def coils(self) -> int:
        return self.oshape[0]

    @property
    def support(self) -> torch.Tensor:
        """Pixels that some coil sees, ``Σ_c |S_c|² > 0``: bool ``[B or 1, 1, H, W]``.

        Image content outside it is in the operator's null space, so no data determine it; with
        ESPIRiT maps (zero where the eigenvalue test finds no signal) it is the object support that
        SENSE imposes implicitly. Reconstructions that add null-space content (a prior's estimate)
        apply it explicitly (:func:`medrecon.recon.reconstruct`).
        """
        return self._maps.abs().square().sum(dim=1, keepdim=True) > 0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        st = self._state.get(x)
        if use_triton(x):  # CUDA: fused kernels of physics.kernels.mri_dc (same map, fewer memory passes)
            return importlib.import_module("physics.kernels.mri_dc").sense_forward(x, st["maps"], st["mask"])
        return st["mask"] * fft2c(st["maps"] * x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        st = self._state.get(y)
        if use_triton(y):
            return importlib.import_module("physics.kernels.mri_dc").sense_adjoint(y, st["maps"], st["mask"])
        return (st["maps"].conj() * ifft2c(st["mask"] * y)).sum(dim=1, keepdim=True)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        st = self._state.get(x)
        m2, maps = st["mask_sq"], st["maps"]
        if m2.shape[-2] == 1:  # column mask: only the W transforms remain (see module docstring)
            z = _ifft_w(m2 * _fft_w(maps * x))
        else:
            z = ifft2c(m2 * fft2c(maps * x))
        return (maps.conj() * z).sum(dim=1, keepdim=True)
