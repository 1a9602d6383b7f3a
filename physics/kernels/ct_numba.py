"""Numba CPU kernels for the matched Joseph projector and the FBP back-projection of :mod:`physics.ct`.

They reproduce the discretisation of :mod:`physics.ct` (Joseph 1982, "An improved algorithm for
reprojecting rays through pixel images", IEEE TMI 1:192-196), i.e. the system matrix

    ``A[r, P] = (1/m_r)·max(0, 1 − |δ_r(P)|/m_r)``,  ``m_r = max(|e_x|, |e_y|)``,

with the float recipe of the torch reference (``_joseph_coefficients``, ``_joseph_plane``,
``_joseph_adjoint_parallel``, ``_joseph_adjoint_fan``, ``_lerp_backproject``):

* **forward, ray-driven** (:func:`_forward_kernel`): the per-ray line ``p + t·e`` and its Joseph
  coefficients ``(plane, a, b, w)`` are evaluated in float64 with the same operations in the same order
  as the torch path (so they are bit-identical) and cast to the input dtype; then
  ``y = w·Σ_ℓ lerp(plane[ℓ], clamp(a + 1 + b·ℓ, 0, N+1))`` on the zero-padded planes of
  ``physics.ct._image_planes`` (the image and its transpose, padded ``(1, 2)`` columns), with
  ``a + 1 + b·ℓ`` rounded once (a fused multiply-add, as torch's ``addcmul``). Lines on which the ray
  cannot touch the image (their term is exactly 0 in the reference) are skipped.
* **adjoint, pixel-driven** (:func:`_adjoint_parallel_kernel`, :func:`_adjoint_fan_kernel`): each
  pixel gathers, view by view, the same taps as the torch reference (window start ``floor(u − h) + 1``
  for parallel beams, the fan window of ``physics.ct._fan_window_start`` with one arctangent instead
  of two (see :func:`_fan_window`), ``taps`` detectors), with ``δ`` and the weights recomputed in the
  input dtype. Every output pixel is written by exactly one thread: no atomics, no races.
* **FBP back-projection** (:func:`_lerp_backproject_kernel`): ``Σ_v weight_v(P)·lerp(q_v, u_v(P))``,
  the voxel-driven linear-interpolation back-projection of Kak & Slaney (1988) eq. 3.62 (parallel),
  §3.4.1/§3.4.2 (fan) used by :meth:`physics.ct.Radon.fbp` (it is *not* the Joseph adjoint: its
  kernel is the unit hat ``max(0, 1 − |k − u|)``, not ``(1/m)·max(0, 1 − |k − u|/h)``).

Layout and dtypes: images ``[B, 1, N, N]`` and sinograms ``[B, 1, views, detectors]``, float32 or
float64 CPU tensors; the result has the input's dtype (the arithmetic is in that dtype, like the
torch path; the geometry tables are computed in float64 first). Angles ``[views]`` are shared by the
batch; angles ``[B, views]`` give each item its own geometry. The kernels agree with the torch path to
rounding (max-norm relative error ≲1e-6 in float32, ≲1e-14 in float64, measured on random data up to
128²; the equiangular-fan FBP ≲1e-5 in float32, where libm's and torch's arctangents differ) and the
pair passes the dot test to rounding.

Parallelism: ``numba.prange`` over views (forward) and image rows (adjoint, back-projection), with
``min(torch.get_num_threads(), NUMBA_NUM_THREADS)`` threads, so ``torch.set_num_threads`` governs
both back-ends. Extra memory: the padded image planes ``2·N·(N+3)`` per item (forward), one scaled
copy of the sinogram and a per-ray table ``views·detectors`` (adjoint), one row accumulator per
thread. The kernels are compiled on first use and cached on disk (``cache=True``, next to this file).

Public API: :func:`radon_forward`, :func:`radon_adjoint`, :func:`lerp_backproject`. Dispatch from
:class:`physics.ct.Radon` goes through :func:`physics.kernels.use_numba` (``torch_only()`` forces the
torch reference).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic

from physics import ct as _ct

__all__ = ["radon_forward", "radon_adjoint", "lerp_backproject"]

_EQUIANGULAR, _FLAT = 1, 2  # fan detector codes of the kernels (0: parallel beam)
_ROWS = 8  # image rows per task of the pixel-driven kernels (a view's sinogram row is reused across them)


# ---------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------
@intrinsic
def _fma(typingctx, a, b, c):
    """``a·b + c`` rounded once (``llvm.fma``): torch's CPU ``addcmul`` kernels use fused multiply-adds, and
    the Joseph positions ``a + b·ℓ`` must round as they do."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@numba.njit(fastmath=False, cache=True)
def _ray_line(fan: bool, cos: float, sin: float, det: float, ray_cos: float, ray_sin: float, rs: float):
    """The ray ``p + t·e`` as ``(p_x, p_y, e_x, e_y)`` in float64, operation for operation as
    ``physics.ct._parallel_ray_lines`` (``p = det·e_s``, ``e = e_r``) / ``_fan_ray_lines``
    (``p = S = −R_s e_r``, ``e = cos γ e_r + sin γ e_s``)."""
    if fan:
        return rs * sin, -rs * cos, -ray_cos * sin + ray_sin * cos, ray_cos * cos + ray_sin * sin
    return det * cos, det * sin, -sin, cos


@numba.njit(inline="always", fastmath=False, cache=True)
def _row_grid(out):
    """``(n, blocks, c)`` of a pixel-driven kernel writing ``out`` ``[B, N, N]``: the image size ``N``,
    the number of ``_ROWS``-row blocks per angle set and the centre ``c = (N − 1)/2`` in out's dtype."""
    n = out.shape[1]
    return n, (n + _ROWS - 1) // _ROWS, out.dtype.type((n - 1) / 2)


@numba.njit(inline="always", fastmath=False, cache=True)
def _row_task(task, blocks, groups, nb, c, out):
    """The work of one task of a pixel-driven kernel: ``(g, i0, rows, first_item, items, acc, xs)``.

    Task ``task`` of ``groups·blocks`` owns angle set ``g`` and image rows ``i0 … i0 + rows − 1``
    (``rows ≤ _ROWS``) of batch items ``first_item … first_item + items − 1`` (all ``nb`` items when the
    angles are shared, G = 1; item ``g`` alone otherwise). ``acc`` ``[items, rows, N]`` is its zeroed
    accumulator and ``xs[j] = j − c`` the pixel centres' x coordinates, both in out's dtype.
    """
    dt = out.dtype.type
    n = out.shape[1]
    g, i0 = task // blocks, (task % blocks) * _ROWS
    rows = min(n, i0 + _ROWS) - i0
    first_item, items = (0, nb) if groups == 1 else (g, 1)
    acc = np.zeros((items, rows, n), dtype=out.dtype)
    xs = np.empty(n, dtype=out.dtype)
    for j in range(n):
        xs[j] = dt(j) - c
    return g, i0, rows, first_item, items, acc, xs


@numba.njit(parallel=True, fastmath=False, cache=True)
def _forward_kernel(planes, cos, sin, det, ray_cos, ray_sin, rs, fan, out):
    """``out[b, v, d] = w·Σ_ℓ lerp(planes[b, plane, ℓ], clamp(a + 1 + b·ℓ, 0, N+1))`` (Joseph, ray-driven).

    planes ``[B, 2, N, N+3]`` (``physics.ct._image_planes``), cos/sin ``[G, V]`` float64 (G = 1: shared
    by the batch; G = B: per item), det/ray_cos/ray_sin ``[D]`` float64, out ``[B, V, D]``.
    """
    dt = out.dtype.type
    nb, n = planes.shape[0], planes.shape[2]
    groups, views = cos.shape
    dets = out.shape[2]
    c = (n - 1) / 2
    zero, one, top = dt(0.0), dt(1.0), dt(n + 1)
    for task in numba.prange(groups * views):
        g, v = task // views, task % views
        first_item, last_item = (0, nb) if groups == 1 else (g, g + 1)
        for d in range(dets):
            px, py, ex, ey = _ray_line(fan, cos[g, v], sin[g, v], det[d], ray_cos[d], ray_sin[d], rs)
            if abs(ey) >= abs(ex):  # row-driven: crosses every row ℓ at column a + b·ℓ
                p = 0
                a = c + px + (c - py) * (ex / ey)
                b = -ex / ey
                w = 1.0 / abs(ey)
            else:  # column-driven: the same on the transposed image
                p = 1
                a = c - py + (c + px) * (ey / ex)
                b = -ey / ex
                w = 1.0 / abs(ex)
            # lines with −1 < a + b·ℓ < N (one line of slack for the cast); the others add exactly 0
            # (clamped in float64 before the integer conversion: for b ≈ 1e-17 the bounds overflow int64)
            lo, hi = 0, n
            if b != 0.0:
                t0, t1 = (-1.0 - a) / b, (n - a) / b
                lo = int(math.floor(min(max(min(t0, t1), 1.0), n + 1.0))) - 1
                hi = int(math.ceil(min(max(max(t0, t1), -1.0), n - 2.0))) + 2
            a1, bt, wt = dt(a) + one, dt(b), dt(w)
            for item in range(first_item, last_item):
                row = planes[item, p]
                acc = zero
                for line in range(lo, hi):
                    pos = min(max(_fma(dt(line), bt, a1), zero), top)  # torch.addcmul's single rounding
                    q = int(pos)
                    f = pos - dt(q)
                    v0 = row[line, q]
                    acc += v0 + f * (row[line, q + 1] - v0)
                out[item, v, d] = acc * wt


@numba.njit(parallel=True, fastmath=False, cache=True)
def _adjoint_parallel_kernel(table, cs, sn, half, inv_h, d0s, taps, out):
    """``out[b, i, j] = Σ_v Σ_t max(0, 1 − |k − u|·inv_h_v)·(y[b, v, k]/m_v)`` with
    ``k = floor(u − h_v) + 1 + t`` and ``u = cs_v·x_j + (sn_v·y_i − d0s)``: the pixel-driven transpose
    of the parallel Joseph forward.

    table ``[B, V, taps + D + taps]`` = ``y/m_v`` zero-padded by ``taps`` on both sides (the window start is
    clamped to ``[−taps, D]`` as in ``physics.ct._tap_index``); cs, sn, half (``h = m/spacing``), inv_h
    ``[G, V]`` in the sinogram's dtype, computed as ``physics.ct._joseph_adjoint_parallel`` does; out
    ``[B, N, N]``. A task owns ``_ROWS`` image rows, so each view's sinogram row is reused across them;
    the loops over a row's pixels are branch-free so that LLVM vectorises them.
    """
    dt = out.dtype.type
    nb, views, width = table.shape
    dets = width - 2 * taps
    groups = cs.shape[0]
    n, blocks, c = _row_grid(out)
    zero, one, lowest, highest, shift = dt(0.0), dt(1.0), dt(-taps), dt(dets), np.int32(taps)
    for task in numba.prange(groups * blocks):
        g, i0, rows, first_item, items, acc, xs = _row_task(task, blocks, groups, nb, c, out)
        k0 = np.empty(n, dtype=np.int32)  # padded index of the first tap
        offset = np.empty(n, dtype=out.dtype)  # k − u of the first tap
        for v in range(views):
            csv, snv, hv, ihv = cs[g, v], sn[g, v], half[g, v], inv_h[g, v]
            for r in range(rows):
                base = snv * (c - dt(i0 + r)) - d0s
                for j in range(n):
                    u = csv * xs[j] + base
                    first = np.floor(u - hv) + one
                    offset[j] = first - u
                    k0[j] = np.int32(min(max(first, lowest), highest)) + shift
                for b in range(items):
                    sino, row = table[first_item + b, v], acc[b, r]
                    for t in range(taps):
                        tt = dt(t)
                        for j in range(n):
                            row[j] += sino[k0[j] + t] * max(one - abs(offset[j] + tt) * ihv, zero)
        out[first_item:first_item + items, i0:i0 + rows, :] = acc


@numba.njit(fastmath=False, cache=True)
def _fan_window(p_s, p_r, mode, length, det0, spacing, one, tiny):
    """``floor(lower) + 1`` of ``physics.ct._fan_window_start``, in the dtype of ``p_s`` (and of ``one``,
    ``tiny`` = 1e-12, passed so that every constant has that dtype).

    ``lower`` is the detector coordinate of the ray at fan angle ``γ_P − α`` (``tan γ_P = p_s/p_r``,
    ``tan α = 1/√(|P − S|² − 1)``). The equiangular branch evaluates ``γ_P − α = atan(tan(γ_P − α))``
    with one arctangent instead of the reference's two (valid since ``|γ_P − α| < π/2``); the window start
    may then differ from the reference's by one detector where ``lower`` is within rounding of an integer;
    the detector gained or lost there (the first one, or the last one of the ``taps`` window) passes at
    distance ≈ 1 ≥ m from the pixel, so its weight ``max(0, 1 − |δ|/m)`` is 0 up to rounding.
    """
    tan_a = one / math.sqrt(max(p_s * p_s + p_r * p_r - one, tiny))
    tan_g = p_s / p_r
    tan_lower = (tan_g - tan_a) / (one + tan_g * tan_a)
    if mode == _EQUIANGULAR:
        lower = math.atan(tan_lower) * length
    else:
        lower = length * (tan_g - tan_a) / (one + tan_g * tan_a)
    return np.floor((lower - det0) / spacing) + one


@numba.njit(parallel=True, fastmath=False, cache=True)
def _adjoint_fan_kernel(table, inv_m, cos, sin, ray_cos, ray_sin, rs, length, det0, spacing, mode, taps, out):
    """``out[b, i, j] = Σ_v Σ_k max(0, 1 − |δ|·inv_m[v, k])·(y·inv_m)[b, v, k]`` over the fan window of each
    pixel, ``δ = p_s cos γ_k − p_r sin γ_k``: the pixel-driven transpose of the fan Joseph forward.

    table ``[B, V, taps + D + taps]`` = ``y·inv_m`` and inv_m ``[G, V, taps + D + taps]``, ray_cos, ray_sin
    ``[taps + D + taps]``, all zero-padded by ``taps`` (as ``physics.ct._joseph_adjoint_fan``); cos, sin
    ``[G, V]``; scalars rs, length, det0, spacing in the sinogram's dtype; out ``[B, N, N]``. Tasks own
    ``_ROWS`` image rows; per row and view the taps' columns and weights are computed once for all items.
    """
    dt = out.dtype.type
    nb, views, width = table.shape
    dets = width - 2 * taps
    groups = cos.shape[0]
    n, blocks, c = _row_grid(out)
    zero, one, tiny, lowest, highest, shift = dt(0.0), dt(1.0), dt(1e-12), dt(-taps), dt(dets), np.int32(taps)
    for task in numba.prange(groups * blocks):
        g, i0, rows, first_item, items, acc, xs = _row_task(task, blocks, groups, nb, c, out)
        k0 = np.empty(n, dtype=np.int32)
        p_s = np.empty(n, dtype=out.dtype)
        p_r = np.empty(n, dtype=out.dtype)
        col = np.empty((taps, n), dtype=np.int32)
        weight = np.empty((taps, n), dtype=out.dtype)
        for v in range(views):
            cv, sv = cos[g, v], sin[g, v]
            inv_mv = inv_m[g, v]
            for r in range(rows):
                yi = c - dt(i0 + r)
                cy, sy = cv * yi + rs, sv * yi
                for j in range(n):
                    ps, pr = cv * xs[j] + sy, -sv * xs[j] + cy
                    p_s[j], p_r[j] = ps, pr
                    first = _fan_window(ps, pr, mode, length, det0, spacing, one, tiny)
                    k0[j] = np.int32(min(max(first, lowest), highest)) + shift
                for t in range(taps):
                    for j in range(n):
                        k = k0[j] + t
                        col[t, j] = k
                        weight[t, j] = max(one - abs(p_s[j] * ray_cos[k] - p_r[j] * ray_sin[k]) * inv_mv[k], zero)
                for b in range(items):
                    sino, row = table[first_item + b, v], acc[b, r]
                    for t in range(taps):
                        for j in range(n):
                            row[j] += sino[col[t, j]] * weight[t, j]
        out[first_item:first_item + items, i0:i0 + rows, :] = acc


@numba.njit(fastmath=False, cache=True)
def _fan_inv_m_kernel(cos, sin, ray_cos, ray_sin, rs, out):
    """``out[g, v, d] = 1/max(|e_x|, |e_y|)`` (float64) of each fan ray, as the ``w`` of
    ``physics.ct._joseph_coefficients`` (``views·detectors`` work: serial, one float64 compilation)."""
    groups, views = cos.shape
    for g in range(groups):
        for v in range(views):
            for d in range(out.shape[2]):
                _, _, ex, ey = _ray_line(True, cos[g, v], sin[g, v], 0.0, ray_cos[d], ray_sin[d], rs)
                out[g, v, d] = 1.0 / abs(ey) if abs(ey) >= abs(ex) else 1.0 / abs(ex)


@numba.njit(parallel=True, fastmath=False, cache=True)
def _lerp_backproject_kernel(q, cos, sin, weights, mode, rs, length, det0, spacing, out):
    """``out[b, i, j] = Σ_v pix_v(P)·lerp(q[b, v], clamp(u_v(P), −1, D))`` (zero outside the detector).

    mode 0 (parallel): ``u = (cos/s)·x + ((sin/s)·y − det0/s)``, ``pix = Δθ_v``; mode 1 (equiangular
    fan): ``u = (atan2(p_s, p_r)·L − det0)/s``, ``pix = Δβ_v/(p_s² + p_r²)``; mode 2 (flat fan):
    ``u = (L·p_s/p_r − det0)/s``, ``pix = Δβ_v·(R_s/p_r)²``. q ``[B, V, 2 + D + 2]`` zero-padded by 2
    (as ``physics.ct._lerp_backproject``); cos, sin, weights ``[G, V]`` in q's dtype (for mode 0 cos,
    sin are already divided by s, and det0 is det0/s); scalars in q's dtype.
    """
    dt = out.dtype.type
    nb, views, width = q.shape
    dets = width - 4
    groups = cos.shape[0]
    n, blocks, c = _row_grid(out)
    lowest, highest, two = dt(-1.0), dt(dets), np.int32(2)
    for task in numba.prange(groups * blocks):
        g, i0, rows, first_item, items, acc, xs = _row_task(task, blocks, groups, nb, c, out)
        u = np.empty(n, dtype=out.dtype)
        col = np.empty(n, dtype=np.int32)
        pix = np.empty(n, dtype=out.dtype)
        for v in range(views):
            cv, sv, wv = cos[g, v], sin[g, v], weights[g, v]
            for r in range(rows):
                yi = c - dt(i0 + r)
                if mode == 0:
                    base = sv * yi - det0
                    for j in range(n):
                        u[j] = cv * xs[j] + base
                        pix[j] = wv
                else:
                    cy, sy = cv * yi + rs, sv * yi
                    for j in range(n):
                        p_s, p_r = cv * xs[j] + sy, -sv * xs[j] + cy
                        if mode == _EQUIANGULAR:
                            # float64 arctangent rounded to the dtype: torch's float32 atan2 is
                            # correctly rounded far more often than libm's atan2f
                            gamma = dt(math.atan2(np.float64(p_s), np.float64(p_r)))
                            u[j] = (gamma * length - det0) / spacing
                            pix[j] = wv / (p_s * p_s + p_r * p_r)
                        else:
                            u[j] = (length * p_s / p_r - det0) / spacing
                            ratio = rs / p_r
                            pix[j] = wv * (ratio * ratio)
                for j in range(n):
                    uj = min(max(u[j], lowest), highest)
                    d0 = np.floor(uj)
                    u[j] = uj - d0  # the interpolation weight
                    col[j] = np.int32(d0) + two
                for b in range(items):
                    qv, row = q[first_item + b, v], acc[b, r]
                    for j in range(n):
                        v0 = qv[col[j]]
                        row[j] += (v0 + u[j] * (qv[col[j] + 1] - v0)) * pix[j]
        out[first_item:first_item + items, i0:i0 + rows, :] = acc


# ---------------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------------
def _set_threads() -> None:
    """Follow torch's CPU thread count (capped by the size of numba's pool).

    Numba's ``omp`` threading layer shares torch's libgomp (same soname), and launching its pool calls
    ``omp_set_num_threads(NUMBA_NUM_THREADS)``, which silently resets ``torch.get_num_threads()``; the
    torch setting read first is restored, so neither back-end changes the other's thread count.
    """
    wanted = torch.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def _check(t: torch.Tensor, shape: tuple, what: str) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or tuple(t.shape[1:]) != shape:
        raise ValueError(f"expected a {what} of shape [B, {', '.join(map(str, shape))}], received "
                         f"{tuple(getattr(t, 'shape', ()))}")
    if t.dtype not in (torch.float32, torch.float64) or t.device.type != "cpu":
        raise ValueError(f"expected a float32 or float64 CPU {what}, received {t.dtype} on {t.device}")


def _angle_sets(geometry: "_ct.Geometry", batch: int) -> torch.Tensor:
    """Float64 angles ``[G, V]``: G = 1 for shared angles, else B (checked against the batch)."""
    angles = geometry.angles
    if angles.ndim == 1 or angles.shape[0] == 1:
        return angles.reshape(1, -1)
    if angles.shape[0] != batch:
        raise ValueError(f"the geometry holds angles for a batch of {angles.shape[0]}, received a batch of {batch}")
    return angles


def _fan_rays(geometry: "_ct.Geometry") -> tuple[np.ndarray, np.ndarray]:
    """``(cos γ_k, sin γ_k)`` float64 ``[D]`` of a fan geometry; zeros for a parallel one (unused there,
    passed so that one forward kernel serves both)."""
    if isinstance(geometry, _ct.FanBeam):
        return tuple(np.ascontiguousarray(t.numpy()) for t in geometry.ray_angles())
    empty = np.zeros(geometry.detectors)
    return empty, empty


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def radon_forward(x: torch.Tensor, geometry: "_ct.Geometry") -> torch.Tensor:
    """Joseph forward projection of :class:`physics.ct.Radon`: ``[B, 1, N, N]`` → ``[B, 1, V, D]``
    (float32/float64 CPU, same dtype out)."""
    g = geometry
    n = g.image_size
    _check(x, (1, n, n), "image")
    angles = _angle_sets(g, x.shape[0])
    planes = _ct._image_planes(x.detach()[:, 0]).contiguous()
    out = torch.empty(x.shape[0], 1, g.views, g.detectors, dtype=x.dtype)
    fan = isinstance(g, _ct.FanBeam)
    ray_cos, ray_sin = _fan_rays(g)
    _set_threads()
    _forward_kernel(planes.numpy(), _np(torch.cos(angles)), _np(torch.sin(angles)), _np(g.detector_positions()),
                    ray_cos, ray_sin, float(g.source_distance) if fan else 0.0, fan, out.numpy()[:, 0])
    return out


def _parallel_taps(geometry: "_ct.ParallelBeam") -> int:
    return max(1, math.ceil(2.0 / geometry.detector_spacing - 1e-12))


def radon_adjoint(y: torch.Tensor, geometry: "_ct.Geometry") -> torch.Tensor:
    """The exact transpose of :func:`radon_forward`, pixel-driven: ``[B, 1, V, D]`` → ``[B, 1, N, N]``."""
    g = geometry
    n, dtype = g.image_size, y.dtype
    _check(y, (1, g.views, g.detectors), "sinogram")
    angles = _angle_sets(g, y.shape[0])
    sino = y.detach()[:, 0]
    cos, sin = torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)  # [G, V], as the torch path
    out = torch.empty(y.shape[0], 1, n, n, dtype=dtype)
    det0 = -(g.detectors - 1) / 2 * g.detector_spacing
    _set_threads()
    if isinstance(g, _ct.ParallelBeam):
        spacing = g.detector_spacing
        m = torch.maximum(cos.abs(), sin.abs())
        taps = _parallel_taps(g)
        table = torch.nn.functional.pad(sino / m.expand(sino.shape[0], -1)[:, :, None], (taps, taps))
        d0s = out.numpy().dtype.type(det0 / spacing)
        _adjoint_parallel_kernel(_np(table), _np(cos / spacing), _np(sin / spacing), _np(m / spacing),
                                 _np(spacing / m), d0s, taps, out.numpy()[:, 0])
        return out
    ray_cos64, ray_sin64 = _fan_rays(g)
    cos64, sin64 = _np(torch.cos(angles)), _np(torch.sin(angles))
    inv_m = np.empty((angles.shape[0], g.views, g.detectors))
    _fan_inv_m_kernel(cos64, sin64, ray_cos64, ray_sin64, float(g.source_distance), inv_m)
    taps = _ct._fan_taps(g)
    pad = (taps, taps)
    inv_m_t = torch.from_numpy(inv_m).to(dtype)  # computed in float64 and cast, as the torch path
    table = torch.nn.functional.pad(sino * inv_m_t.expand(sino.shape[0], -1, -1), pad)
    scalar = out.numpy().dtype.type
    ray_cos, ray_sin = (_np(torch.nn.functional.pad(torch.from_numpy(t).to(dtype), pad))
                        for t in (ray_cos64, ray_sin64))
    mode = _EQUIANGULAR if g.detector == "equiangular" else _FLAT
    _adjoint_fan_kernel(_np(table), _np(torch.nn.functional.pad(inv_m_t, pad)), _np(cos), _np(sin), ray_cos, ray_sin,
                        scalar(g.source_distance), scalar(g._length), scalar(det0), scalar(g.detector_spacing),
                        mode, taps, out.numpy()[:, 0])
    return out


def lerp_backproject(q: torch.Tensor, geometry: "_ct.Geometry", angles: torch.Tensor,
                     weights: torch.Tensor) -> torch.Tensor:
    """The FBP back-projection of :meth:`physics.ct.Radon.fbp` for one set of angles.

    ``q`` ``[B, V, D]`` filtered (and, for fan beams, pre-weighted) sinograms; ``angles`` ``[V]``
    float64 radians and ``weights`` ``[V]`` the quadrature weights Δθ_v (float64). Returns
    ``Σ_v pix_v(P)·lerp(q_v, u_v(P))`` ``[B, N, N]`` in q's dtype (see :func:`_lerp_backproject_kernel`).
    """
    g = geometry
    n, dtype = g.image_size, q.dtype
    if q.ndim != 3 or tuple(q.shape[1:]) != (g.views, g.detectors) or angles.shape != (g.views,):
        raise ValueError(f"expected q [B, {g.views}, {g.detectors}] and angles [{g.views}], received "
                         f"{tuple(q.shape)} and {tuple(angles.shape)}")
    cos, sin = torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)
    det0 = -(g.detectors - 1) / 2 * g.detector_spacing
    spacing = g.detector_spacing
    out = torch.empty(q.shape[0], n, n, dtype=dtype)
    scalar = out.numpy().dtype.type
    if isinstance(g, _ct.ParallelBeam):
        mode, cos, sin, rs, length, shift = 0, cos / spacing, sin / spacing, 0.0, 0.0, det0 / spacing
    else:
        mode = _EQUIANGULAR if g.detector == "equiangular" else _FLAT
        rs, length, shift = g.source_distance, g._length, det0
    table = torch.nn.functional.pad(q.detach(), (2, 2))
    _set_threads()
    _lerp_backproject_kernel(_np(table), _np(cos[None]), _np(sin[None]), _np(weights.to(dtype)[None]), mode,
                             scalar(rs), scalar(length), scalar(shift), scalar(spacing), out.numpy())
    return out
