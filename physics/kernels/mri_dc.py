"""Fused MRI data-consistency kernels (Triton) around ``torch.fft``, with their torch references.

Conventions (DESIGN.md): images ``x`` are ``[B, 1, H, W]`` complex64, coil maps ``S`` are
``[B|1, C, H, W]`` complex64 (``None`` = single coil, C = 1), k-space ``k, y`` is ``[B, C, H, W]``
complex64 and centred, the Fourier transform is the centred orthonormal ``fft2c`` of
:mod:`physics.fourier` (‖F‖ = 1). A sampling mask ``M`` is real (or bool) and broadcastable to the
k-space shape, in the centred layout (e.g. ``[1, 1, 1, W]`` for Cartesian columns).

The operations
--------------
* SENSE expand ``S·x`` (``[B,1,H,W] → [B,C,H,W]``) and combine ``Sᴴk = Σ_c conj(S_c)·k_c``.
* The masked k-space blend of Song, Shen, Xing & Ermon, "Solving inverse problems in medical
  imaging with score-based generative models", ICLR 2022 (REFERENCES.md §1)::

      k' = (1 − λM)·k + λ·M·ŷ_t,      ŷ_t = y + σ(t)·z

  with λ ∈ [0, 1] (λ = 1: hard replacement) and ``z`` standard complex noise (unit variance per
  real component) drawn by the caller from an explicit ``torch.Generator`` (e.g.
  ``medrecon.noise.randn_like(y, generator)``); the kernel only fuses ``y + σ·z`` into the blend.
* One data-consistency step (:func:`dc_step`)::

      x' = Sᴴ F⁻¹[(1 − λM)·F S x + λ·M·ŷ_t]

  which for ``maps=None`` is exactly the single-coil projection of Song et al. (their ``T`` is
  the unnormalised FFT with a 1/size factor; medrecon's orthonormal ``F`` is the same map up to the
  scaling of ``y``).

Centring without ``fftshift`` copies (the checkerboard trick)
--------------------------------------------------------------
For even ``H`` and ``W`` the ``fftshift``/``ifftshift`` pair is a roll by half the size, and a roll
by N/2 of a length-N DFT is a modulation by ``(−1)^n``. With ``c[n] = (−1)^(n₁+n₂)`` and the scalar
``s = (−1)^((H+W)/2)``::

      fft2c(x)  = s · c ⊙ fft2(c ⊙ x)          ifft2c(k) = s · c ⊙ ifft2(c ⊙ k)

(both at the same array positions, no index shift). The Triton path multiplies ``c`` into the
expand and combine kernels and ``s·c`` into the blend, so a multi-coil DC step is
expand+sign → ``torch.fft.fft2`` → blend → ``torch.fft.ifft2`` → sign+combine: three memory passes
besides the FFTs, against about nine for the plain torch ops. Odd sizes have no such identity and
use the torch reference.

Dispatch
--------
Each public function takes ``backend="auto" | "triton" | "torch"`` (see :mod:`physics.kernels`):
Triton for complex64 CUDA tensors, the ``*_reference`` torch function otherwise (CPU, complex128,
odd sizes for the FFT-based steps). Nothing here is differentiable by itself beyond what torch
records on the reference path; operators that use these kernels (``physics.mri.MultiCoilMRI``)
get exact gradients from :class:`physics.operator.LinearOperator`, whose backward is the partner
map.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from physics.fourier import fft2c, ifft2c
from physics.kernels import resolve_backend

try:  # optional dependency: the references below never need it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None

__all__ = [
    "checkerboard",
    "sense_expand",
    "sense_expand_reference",
    "sense_combine",
    "sense_combine_reference",
    "kspace_blend",
    "kspace_blend_reference",
    "sense_forward",
    "sense_forward_reference",
    "sense_adjoint",
    "sense_adjoint_reference",
    "dc_step",
    "dc_step_reference",
]

Scalar = Union[float, torch.Tensor]
_BLOCK = 1024


def _jit(fn):
    return triton.jit(fn) if triton is not None else fn


# ---------------------------------------------------------------------------------------------------
# Triton kernels. Complex tensors are passed as ``torch.view_as_real`` float32 views (interleaved
# re/im); a [BLOCK, 2] tile is loaded and split, so every access is one 8-byte word per element.
# ---------------------------------------------------------------------------------------------------
@_jit
def _plane_block(H, W, BLOCK: tl.constexpr):
    """This program's BLOCK flat pixel indices ``p = i·W + j`` of an H×W plane (grid axis 0):
    ``(hw, p, valid, two)`` with ``hw = H·W``, ``valid = p < hw`` and ``two = [[0, 1]]`` (the re/im
    lane of an interleaved element, see :func:`_complex_ptrs`)."""
    hw = H * W
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = p < hw
    two = tl.arange(0, 2)[None, :]
    return hw, p, valid, two


@_jit
def _complex_ptrs(ptr, idx, two):
    """``[BLOCK, 2]`` pointers to the (re, im) floats of the complex elements ``idx`` of an interleaved
    float32 buffer (``two = [[0, 1]]``); store a ``tl.join(re, im)`` tile there with ``mask=valid[:, None]``."""
    return ptr + idx[:, None] * 2 + two


@_jit
def _load_tile(ptr, idx, valid, two):
    """The ``[BLOCK, 2]`` (re, im) tile of the complex elements ``idx`` (0 where not valid); ``tl.split``
    gives ``(re, im)``."""
    return tl.load(_complex_ptrs(ptr, idx, two), mask=valid[:, None], other=0.0)


@_jit
def _checker_sign(ij):
    """``(−1)^(i+j)`` as float32, from the integer index sum ``ij = i + j``."""
    return 1.0 - 2.0 * (ij & 1).to(tl.float32)


@_jit
def _checkerboard(re, im, p, W):
    """``(re, im)·(−1)^(i+j)`` at the flat pixel indices ``p = i·W + j``."""
    i = p // W
    sgn = _checker_sign(i + p - i * W)
    return re * sgn, im * sgn


@_jit
def _expand_kernel(x_ptr, s_ptr, out_ptr, C, H, W, s_bstride,
                   BLOCK: tl.constexpr, CHECKER: tl.constexpr, HAS_MAPS: tl.constexpr):
    """out[b, c] = (−1)^(i+j)·S[b, c]·x[b] (sign only if CHECKER, S = 1 if not HAS_MAPS)."""
    b = tl.program_id(1).to(tl.int64)
    hw, p, valid, two = _plane_block(H, W, BLOCK)
    xr, xi = tl.split(_load_tile(x_ptr, b * hw + p, valid, two))
    if CHECKER:
        xr, xi = _checkerboard(xr, xi, p, W)
    if HAS_MAPS:
        for c in range(C):
            sr, si = tl.split(_load_tile(s_ptr, b * s_bstride + c * hw + p, valid, two))
            out = tl.join(sr * xr - si * xi, sr * xi + si * xr)
            tl.store(_complex_ptrs(out_ptr, (b * C + c) * hw + p, two), out, mask=valid[:, None])
    else:
        tl.store(_complex_ptrs(out_ptr, b * hw + p, two), tl.join(xr, xi), mask=valid[:, None])


@_jit
def _combine_kernel(k_ptr, s_ptr, out_ptr, C, H, W, s_bstride,
                    BLOCK: tl.constexpr, CHECKER: tl.constexpr, HAS_MAPS: tl.constexpr):
    """out[b] = (−1)^(i+j)·Σ_c conj(S[b, c])·k[b, c]."""
    b = tl.program_id(1).to(tl.int64)
    hw, p, valid, two = _plane_block(H, W, BLOCK)
    acc_r = tl.zeros([BLOCK], dtype=tl.float32)
    acc_i = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_MAPS:
        for c in range(C):
            kv = _load_tile(k_ptr, (b * C + c) * hw + p, valid, two)
            sv = _load_tile(s_ptr, b * s_bstride + c * hw + p, valid, two)
            kr, ki = tl.split(kv)
            sr, si = tl.split(sv)
            acc_r += sr * kr + si * ki
            acc_i += sr * ki - si * kr
    else:
        acc_r, acc_i = tl.split(_load_tile(k_ptr, b * hw + p, valid, two))
    if CHECKER:
        acc_r, acc_i = _checkerboard(acc_r, acc_i, p, W)
    tl.store(_complex_ptrs(out_ptr, b * hw + p, two), tl.join(acc_r, acc_i), mask=valid[:, None])


@_jit
def _blend_kernel(u_ptr, y_ptr, z_ptr, m_ptr, lam_ptr, sig_ptr, out_ptr, C, H, W,
                  msb, msc, msh, msw, ysign,
                  BLOCK: tl.constexpr, CHECKER: tl.constexpr, HAS_U: tl.constexpr, HAS_NOISE: tl.constexpr):
    """out = (1 − λM)·u + λ·M·g·(y + σ·z), g = ysign·(−1)^(i+j) if CHECKER else ysign; u = 0 if not HAS_U."""
    bc = tl.program_id(1).to(tl.int64)
    b = bc // C
    c = bc - b * C
    hw, p, valid, two = _plane_block(H, W, BLOCK)
    i = p // W
    j = p - i * W
    m = tl.load(m_ptr + b * msb + c * msc + i * msh + j * msw, mask=valid, other=0.0)
    w = tl.load(lam_ptr + b) * m
    off = (bc * hw + p)[:, None] * 2 + two
    yv = tl.load(y_ptr + off, mask=valid[:, None], other=0.0)
    if HAS_NOISE:
        yv += tl.load(sig_ptr + b) * tl.load(z_ptr + off, mask=valid[:, None], other=0.0)
    g = w * ysign
    if CHECKER:
        g = g * _checker_sign(i + j)
    out = g[:, None] * yv
    if HAS_U:
        out += (1.0 - w)[:, None] * tl.load(u_ptr + off, mask=valid[:, None], other=0.0)
    tl.store(out_ptr + off, out, mask=valid[:, None])


# ---------------------------------------------------------------------------------------------------
# Checks and helpers
# ---------------------------------------------------------------------------------------------------
def checkerboard(h: int, w: int, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sign pattern ``c[i, j] = (−1)^(i+j)`` of shape ``[h, w]``."""
    i = torch.arange(h, device=device).reshape(-1, 1)
    j = torch.arange(w, device=device).reshape(1, -1)
    return (1 - 2 * ((i + j) % 2)).to(dtype)


def _centre_sign(h: int, w: int) -> float:
    """``s = (−1)^((H+W)/2)`` in ``fft2c = s·c⊙fft2(c⊙·)`` (even H, W)."""
    return -1.0 if ((h + w) // 2) % 2 else 1.0


def _check_image(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, received {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1 or not x.is_complex():
        raise ValueError(f"expected {name} complex of shape [B, 1, H, W], received {x.dtype} {tuple(x.shape)}")


def _check_maps(maps: Optional[torch.Tensor], batch: int, h: int, w: int, coils: Optional[int] = None) -> int:
    """Validates ``maps`` against ``[B|1, C, H, W]``; returns C (1 for ``None``)."""
    if maps is None:
        if coils not in (None, 1):
            raise ValueError(f"maps=None means a single coil, but the k-space has {coils} coils")
        return 1
    if maps.ndim != 4 or not maps.is_complex() or maps.shape[0] not in (1, batch) or tuple(maps.shape[2:]) != (h, w):
        raise ValueError(
            f"expected complex coil maps of shape [{batch} or 1, C, {h}, {w}], received {maps.dtype} {tuple(maps.shape)}"
        )
    if coils is not None and maps.shape[1] != coils:
        raise ValueError(f"coil maps have {maps.shape[1]} coils, k-space has {coils} (shape [B, C, H, W])")
    return int(maps.shape[1])


def _check_kspace(k: torch.Tensor, name: str) -> None:
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, received {type(k).__name__}")
    if k.ndim != 4 or not k.is_complex():
        raise ValueError(f"expected {name} complex of shape [B, C, H, W], received {k.dtype} {tuple(k.shape)}")


def _check_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Returns the mask broadcast (a view) to ``shape``; raises naming both shapes if it cannot be."""
    if not isinstance(mask, torch.Tensor) or mask.is_complex():
        raise ValueError(f"mask must be a real or bool tensor broadcastable to {tuple(shape)}, received {mask!r}")
    try:
        return mask.broadcast_to(shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the k-space shape {tuple(shape)}") from None


def _per_item(v: Scalar, batch: int, name: str, device, dtype=torch.float32) -> torch.Tensor:
    """A float or a [B]/[1] tensor → a [B] tensor (for λ and σ)."""
    t = torch.as_tensor(v, dtype=dtype, device=device).reshape(-1)
    if t.numel() == 1:
        return t.expand(batch).contiguous()
    if t.numel() != batch:
        raise ValueError(f"{name} must be a scalar or have one value per batch item ({batch}), received shape {tuple(t.shape)}")
    return t.contiguous()


def _bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _check_blend_args(k: Optional[torch.Tensor], y: torch.Tensor, noise: Optional[torch.Tensor]) -> None:
    _check_kspace(y, "y")
    if k is not None:
        _check_kspace(k, "k")
        if k.shape != y.shape:
            raise ValueError(f"k and y must have the same shape [B, C, H, W], received {tuple(k.shape)} and {tuple(y.shape)}")
    if noise is not None and noise.shape != y.shape:
        raise ValueError(f"noise must have the shape of y {tuple(y.shape)}, received {tuple(noise.shape)}")


def _triton_ok(t: torch.Tensor, backend: str, *tensors: Optional[torch.Tensor]) -> bool:
    """Triton is used when the backend asks for it and every tensor is complex64 (complex128 → torch)."""
    if not resolve_backend(backend, t):
        return False
    return all(v is None or not v.is_complex() or v.dtype == torch.complex64 for v in (t,) + tensors)


def _as_real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t.contiguous())


def _grid(hw: int, n: int) -> tuple[int, int]:
    return (triton.cdiv(hw, _BLOCK), n)


# ---------------------------------------------------------------------------------------------------
# Launchers (Triton path; inputs already validated, complex64)
# ---------------------------------------------------------------------------------------------------
def _launch_sense(kernel, src: torch.Tensor, maps: Optional[torch.Tensor], coils: int, out_channels: int,
                  checker: bool) -> torch.Tensor:
    """Launches the expand or combine kernel on ``src`` ``[B, ·, H, W]`` into a new ``[B, out_channels, H, W]``.

    ``coils`` is C of the maps ``[B|1, C, H, W]``; maps shared by the batch get batch stride 0, and for
    ``maps=None`` the kernel's unused maps pointer is ``src``'s.
    """
    b, _, h, w = src.shape
    out = torch.empty((b, out_channels, h, w), dtype=src.dtype, device=src.device)
    src_r = _as_real(src)
    sr = src_r if maps is None else _as_real(maps)
    sb = 0 if maps is None or maps.shape[0] == 1 else coils * h * w
    kernel[_grid(h * w, b)](src_r, sr, torch.view_as_real(out), coils, h, w, sb,
                            BLOCK=_BLOCK, CHECKER=checker, HAS_MAPS=maps is not None)
    return out


def _launch_expand(x: torch.Tensor, maps: Optional[torch.Tensor], checker: bool) -> torch.Tensor:
    c = 1 if maps is None else maps.shape[1]
    return _launch_sense(_expand_kernel, x, maps, c, c, checker)


def _launch_combine(k: torch.Tensor, maps: Optional[torch.Tensor], checker: bool) -> torch.Tensor:
    return _launch_sense(_combine_kernel, k, maps, k.shape[1], 1, checker)


def _launch_blend(k: Optional[torch.Tensor], y: torch.Tensor, mask: torch.Tensor, lam: torch.Tensor,
                  sigma: Optional[torch.Tensor], noise: Optional[torch.Tensor], checker: bool, ysign: float,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
    b, c, h, w = y.shape
    m = _check_mask(mask.to(device=y.device, dtype=torch.float32), y.shape)  # converted before broadcasting
    yr = _as_real(y)
    kr = yr if k is None else _as_real(k)
    zr = yr if noise is None else _as_real(noise.to(y.dtype))
    sig = lam if sigma is None else sigma
    if out is None:
        out = torch.empty_like(y, memory_format=torch.contiguous_format)
    msb, msc, msh, msw = m.stride()
    _blend_kernel[_grid(h * w, b * c)](kr, yr, zr, m, lam, sig, torch.view_as_real(out), c, h, w,
                                       msb, msc, msh, msw, float(ysign),
                                       BLOCK=_BLOCK, CHECKER=checker, HAS_U=k is not None, HAS_NOISE=noise is not None)
    return out


# ---------------------------------------------------------------------------------------------------
# SENSE expand / combine
# ---------------------------------------------------------------------------------------------------
def sense_expand_reference(x: torch.Tensor, maps: Optional[torch.Tensor], *, checkerboard_sign: bool = False) -> torch.Tensor:
    """Torch reference of :func:`sense_expand`: ``S·x`` (times ``(−1)^(i+j)`` if ``checkerboard_sign``)."""
    out = x if maps is None else maps * x
    if checkerboard_sign:
        out = out * checkerboard(*x.shape[-2:], device=x.device, dtype=x.real.dtype)
    return out


def sense_expand(x: torch.Tensor, maps: Optional[torch.Tensor], *, checkerboard_sign: bool = False,
                 backend: str = "auto") -> torch.Tensor:
    """SENSE expansion ``[B,1,H,W] → [B,C,H,W]``: ``out_c = S_c·x`` (one pass over the maps).

    With ``checkerboard_sign`` the result is also multiplied by ``(−1)^(i+j)`` (the pre-FFT half of
    the centring trick, see the module docstring). ``maps=None`` is one coil with ``S = 1``.
    """
    _check_image(x)
    _check_maps(maps, x.shape[0], *x.shape[-2:])
    if not _triton_ok(x, backend, maps):
        return sense_expand_reference(x, maps, checkerboard_sign=checkerboard_sign)
    return _launch_expand(x, maps, checkerboard_sign)


def sense_combine_reference(k: torch.Tensor, maps: Optional[torch.Tensor], *, checkerboard_sign: bool = False) -> torch.Tensor:
    """Torch reference of :func:`sense_combine`: ``Σ_c conj(S_c)·k_c`` (times ``(−1)^(i+j)``)."""
    out = k if maps is None else (maps.conj() * k).sum(dim=1, keepdim=True)
    if checkerboard_sign:
        out = out * checkerboard(*k.shape[-2:], device=k.device, dtype=k.real.dtype)
    return out


def sense_combine(k: torch.Tensor, maps: Optional[torch.Tensor], *, checkerboard_sign: bool = False,
                  backend: str = "auto") -> torch.Tensor:
    """SENSE coil combination ``[B,C,H,W] → [B,1,H,W]``: ``Σ_c conj(S_c)·k_c``, the adjoint of
    :func:`sense_expand` (with the same optional ``(−1)^(i+j)`` sign, which is its own adjoint)."""
    _check_kspace(k, "k")
    _check_maps(maps, k.shape[0], *k.shape[-2:], coils=k.shape[1])
    if not _triton_ok(k, backend, maps):
        return sense_combine_reference(k, maps, checkerboard_sign=checkerboard_sign)
    return _launch_combine(k, maps, checkerboard_sign)


# ---------------------------------------------------------------------------------------------------
# The masked blend of Song et al. 2022
# ---------------------------------------------------------------------------------------------------
def kspace_blend_reference(k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, lam: Scalar = 1.0,
                           sigma: Scalar = 0.0, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Torch reference of :func:`kspace_blend`: ``(1 − λM)·k + λ·M·(y + σ·z)``."""
    _check_blend_args(k, y, noise)
    m = _check_mask(mask, y.shape).to(y.real.dtype)
    lam_b = _bview(_per_item(lam, y.shape[0], "lam", y.device, y.real.dtype), y)
    target = y
    if noise is not None:
        target = y + _bview(_per_item(sigma, y.shape[0], "sigma", y.device, y.real.dtype), y) * noise
    w = lam_b * m
    return (1 - w) * k + w * target


def kspace_blend(k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, lam: Scalar = 1.0, sigma: Scalar = 0.0,
                 noise: Optional[torch.Tensor] = None, backend: str = "auto") -> torch.Tensor:
    """λ-weighted k-space replacement (Song et al. 2022, REFERENCES.md §1)::

        k' = (1 − λM)·k + λ·M·(y + σ·z)

    ``k, y``: ``[B, C, H, W]`` complex; ``mask``: real/bool broadcastable to that shape; ``lam`` and
    ``sigma``: floats or ``[B]`` tensors (σ(t) of the sampler, per item); ``noise``: the standard
    complex noise ``z`` (unit variance per real component, drawn by the caller from its generator)
    or ``None`` for the noiseless measurement. ``lam=1`` is the hard replacement.
    """
    _check_blend_args(k, y, noise)
    if not _triton_ok(y, backend, k, noise):
        return kspace_blend_reference(k, y, mask, lam=lam, sigma=sigma, noise=noise)
    b = y.shape[0]
    lam_t = _per_item(lam, b, "lam", y.device)
    sig_t = None if noise is None else _per_item(sigma, b, "sigma", y.device)
    return _launch_blend(k, y, mask, lam_t, sig_t, noise, False, 1.0)


# ---------------------------------------------------------------------------------------------------
# The SENSE forward/adjoint (M·F·S and Sᴴ·Fᴴ·M) and one DC step, fused with the checkerboard trick
# ---------------------------------------------------------------------------------------------------
def _fusable(x: torch.Tensor, backend: str, *tensors: Optional[torch.Tensor]) -> bool:
    h, w = x.shape[-2:]
    return h % 2 == 0 and w % 2 == 0 and _triton_ok(x, backend, *tensors)


def sense_forward_reference(x: torch.Tensor, maps: Optional[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Torch reference of :func:`sense_forward`: ``M ⊙ fft2c(S·x)``."""
    k = fft2c(sense_expand_reference(x, maps))
    return _check_mask(mask, k.shape).to(k.real.dtype) * k


def sense_forward(x: torch.Tensor, maps: Optional[torch.Tensor], mask: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Multi-coil Cartesian forward model ``y = M ⊙ fft2c(S·x)``: ``[B,1,H,W] → [B,C,H,W]``.

    Fused path (even H, W): expand+sign → ``fft2`` → mask+sign (in place).
    """
    _check_image(x)
    c = _check_maps(maps, x.shape[0], *x.shape[-2:])
    _check_mask(mask, (x.shape[0], c) + tuple(x.shape[-2:]))
    if not _fusable(x, backend, maps):
        return sense_forward_reference(x, maps, mask)
    h, w = x.shape[-2:]
    k = torch.fft.fft2(_launch_expand(x, maps, True), norm="ortho")
    ones = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    return _launch_blend(None, k, mask, ones, None, None, True, _centre_sign(h, w), out=k)


def sense_adjoint_reference(y: torch.Tensor, maps: Optional[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Torch reference of :func:`sense_adjoint`: ``Σ_c conj(S_c)·ifft2c(M ⊙ y_c)``."""
    m = _check_mask(mask, y.shape).to(y.real.dtype)
    return sense_combine_reference(ifft2c(m * y), maps)


def sense_adjoint(y: torch.Tensor, maps: Optional[torch.Tensor], mask: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Adjoint of :func:`sense_forward`: ``Sᴴ·ifft2c(M ⊙ y)``, ``[B,C,H,W] → [B,1,H,W]`` (real M).

    Fused path (even H, W): mask+sign → ``ifft2`` → sign+combine.
    """
    _check_kspace(y, "y")
    _check_maps(maps, y.shape[0], *y.shape[-2:], coils=y.shape[1])
    _check_mask(mask, y.shape)
    if not _fusable(y, backend, maps):
        return sense_adjoint_reference(y, maps, mask)
    h, w = y.shape[-2:]
    ones = torch.ones(y.shape[0], dtype=torch.float32, device=y.device)
    v = torch.fft.ifft2(_launch_blend(None, y, mask, ones, None, None, True, _centre_sign(h, w)), norm="ortho")
    return _launch_combine(v, maps, True)


def dc_step_reference(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, maps: Optional[torch.Tensor] = None,
                      lam: Scalar = 1.0, sigma: Scalar = 0.0, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Torch reference of :func:`dc_step` with plain torch ops (``fft2c``/``ifft2c`` with shifts)."""
    k = fft2c(sense_expand_reference(x, maps))
    k = kspace_blend_reference(k, y, mask, lam=lam, sigma=sigma, noise=noise)
    return sense_combine_reference(ifft2c(k), maps)


def dc_step(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, maps: Optional[torch.Tensor] = None,
            lam: Scalar = 1.0, sigma: Scalar = 0.0, noise: Optional[torch.Tensor] = None,
            backend: str = "auto") -> torch.Tensor:
    """One data-consistency projection of Song et al. 2022 (REFERENCES.md §1), multi-coil SENSE form::

        x' = Σ_c conj(S_c)·ifft2c[(1 − λM)·fft2c(S_c·x) + λ·M·(y_c + σ·z_c)]

    ``x``: ``[B,1,H,W]`` complex image; ``y``: ``[B,C,H,W]`` measured centred k-space;
    ``mask``: broadcastable to ``y``; ``maps``: ``[B|1,C,H,W]`` or ``None`` (single coil, C = 1);
    ``lam``, ``sigma``: floats or ``[B]``; ``noise``: standard complex noise shaped like ``y``
    drawn by the caller (``None``: noiseless ``y``). With ``Σ_c|S_c|² = 1`` and ``lam=0`` this is the
    identity. Fused path (complex64, even H and W): 3 kernels + 2 FFTs, no shift copies.
    """
    _check_image(x)
    _check_blend_args(None, y, noise)
    if y.shape[0] != x.shape[0] or tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(f"x [B,1,H,W] and y [B,C,H,W] disagree: received {tuple(x.shape)} and {tuple(y.shape)}")
    _check_maps(maps, x.shape[0], *x.shape[-2:], coils=y.shape[1])
    _check_mask(mask, y.shape)
    if not _fusable(x, backend, maps, y, noise):
        return dc_step_reference(x, y, mask, maps=maps, lam=lam, sigma=sigma, noise=noise)
    b, _, h, w = x.shape
    lam_t = _per_item(lam, b, "lam", x.device)
    sig_t = None if noise is None else _per_item(sigma, b, "sigma", x.device)
    k = torch.fft.fft2(_launch_expand(x, maps, True), norm="ortho")
    k = _launch_blend(k, y, mask, lam_t, sig_t, noise, True, _centre_sign(h, w), out=k)
    return _launch_combine(torch.fft.ifft2(k, norm="ortho"), maps, True)
