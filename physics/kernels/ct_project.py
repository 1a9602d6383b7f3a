"""Triton kernels for the matched Joseph projector of :mod:`physics.ct` (parallel and fan beam).

They reproduce, to float32 rounding, the discretisation documented in :mod:`physics.ct` (Joseph 1982,
IEEE TMI 1:192-196): the system matrix ``A[r, P] = (1/m_r)·max(0, 1 − |δ_r(P)|/m_r)`` evaluated

* **ray-driven** for the forward (:func:`_forward_kernel`): one lane per ray, ``y = w·Σ_ℓ lerp(plane[ℓ],
  a + b·ℓ)`` over the lines of the ray's plane (the image for row-driven rays, its transpose for
  column-driven ones, so every gather is along a contiguous row), with the per-ray coefficients
  ``(plane, a, b, w)`` computed in float64 by the same functions as the torch path and cast to float32;
* **pixel-driven** for the adjoint (:func:`_adjoint_parallel_kernel`, :func:`_adjoint_fan_kernel`): one
  lane per pixel; for every view the pixel gathers the few detectors whose rays pass within ``m`` of
  its centre (``δ`` recomputed per tap exactly as the torch path does). No atomics, no scatter.

Both directions evaluate the same matrix entries, so ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ to float32 rounding, and both
agree with the torch path of :class:`physics.ct.Radon` to ~1e-6 relative. Batched; angles per batch
item (``[B, views]``) are supported; any detector count and spacing. Float32 only: float64 inputs take
the torch path.

Batch layout (:class:`LaunchConfig`). With shared angles a program handles up to 16 batch items. In the
batch-inner layout the image (and its transpose) and the sinogram are copied with the items innermost,
so every gather fetches the items' values of one pixel or detector bin as one vector and the geometry
arithmetic is shared by all of them: on an H100 at 512²/720 views/B16 this took the forward from 7.7 to
1.73 ms and the adjoint from 4.26 to 1.63 ms (``benchmarks/RESULTS-gpu.md``). On a GPU the projector
times its candidate launches once per batch size and keeps the fastest (:meth:`JosephProjector.config`).
Memory beyond inputs and outputs: the ray tables (``views·detectors`` per set of angles) and one copy of
the input and of the output in the launch's layout (the image copy holds the transpose too), i.e.
``O(N² + views·detectors)`` per batch item.

Public API: :class:`JosephProjector` (tables cached per device) and the functions
:func:`radon_forward` / :func:`radon_adjoint` with ``backend="auto" | "triton" | "torch"``
(see :mod:`physics.kernels`). The equiangular fan window uses an arctangent written here (Triton has
none); it only widens the window of candidate detectors (one extra tap), never the weights.
"""
from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from typing import Optional

import torch

from physics import ct as _ct
from physics.kernels import resolve_backend, torch_only

try:  # optional dependency
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None

__all__ = ["JosephProjector", "LaunchConfig", "candidate_configs", "radon_forward", "radon_adjoint"]

_WINDOW_MARGIN = 0.05  # detector-index slack of the fan window (covers the arctangent's error)
_TUNE_REPEATS = 3  # timed launches per candidate when a projector tunes its launch on a GPU


@dataclass(frozen=True)
class LaunchConfig:
    """How a projection is launched: the batch ``layout`` (``"batch-outer"``: the ``[B, …]`` tensors as
    they are; ``"batch-inner"``: copies with the items innermost, one vector gather per pixel or bin),
    ``items`` batch items per program (a power of two) and the ``block`` of rays (forward, ``(rays,)``)
    or pixels (adjoint, ``(rows, columns)``) per program."""

    layout: str
    items: int
    block: tuple[int, ...]


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def candidate_configs(direction: str, batch: int, shared: bool) -> list[LaunchConfig]:
    """The launches a projector chooses from for ``direction`` (``"forward"`` or ``"adjoint"``), the
    default first. Per-item angles and single images have one: batch-outer, one item per program.
    Shared angles with B ≥ 2 add batch-inner launches of up to 16 items per program, the default
    from B ≥ 4 (fewer items leave most of a vector gather idle)."""
    outer_block = (128,) if direction == "forward" else (16, 32)
    if not shared or batch == 1:
        return [LaunchConfig("batch-outer", 1, outer_block)]
    outer = LaunchConfig("batch-outer", min(4, _pow2_at_least(batch)), outer_block)
    items = min(16, _pow2_at_least(batch))
    blocks = [(64,), (32,)] if direction == "forward" else [(8, 16), (16, 16)]
    inner = [LaunchConfig("batch-inner", items, b) for b in blocks]
    return inner + [outer] if batch >= 4 else [outer] + inner


def _jit(fn):
    return triton.jit(fn) if triton is not None else fn


# ---------------------------------------------------------------------------------------------------
# Kernels (the @jit helpers are inlined into the kernels that call them)
#
# Batch layout. A program handles ITEMS batch items ("lanes") of one group g: item = g·ITEMS + lane.
# Every tensor is addressed through strides (group, lane, …), so the same kernels read either
#   * batch-outer: the natural [B, …] tensors (lane stride = one image or sinogram), or
#   * batch-inner: [G, …, ITEMS] copies with the items innermost (lane stride 1), where one gather
#     fetches the ITEMS values of a pixel (or detector bin) as one contiguous vector and the geometry
#     arithmetic of a ray or pixel is shared by all of them.
# Triton specialises integer arguments equal to 1, so the batch-inner loads are vectorised.
# ---------------------------------------------------------------------------------------------------
@_jit
def _lanes(B, ITEMS: tl.constexpr):
    """``(group, lanes, item_ok)``: this program's group (grid axis 2, int64), its lanes ``[0, ITEMS)``
    (int64) and the mask ``[ITEMS, 1]`` of the lanes whose item ``group·ITEMS + lane`` is ``< B``."""
    group = tl.program_id(2).to(tl.int64)
    lanes = tl.arange(0, ITEMS).to(tl.int64)
    item_ok = (group * ITEMS + lanes < B)[:, None]
    return group, lanes, item_ok


@_jit
def _pixel_tile(N, c, TI: tl.constexpr, TJ: tl.constexpr):
    """The TI × TJ pixel tile of a pixel-driven program (grid axes 1: rows, 0: columns, flattened
    row-major): ``(i, j, inside, xj, yi)`` with ``inside = (i < N) & (j < N)`` and the pixel centres
    ``xj = j − c``, ``yi = c − i`` (float32, ``c = (N − 1)/2``; y points up)."""
    p = tl.arange(0, TI * TJ)
    i = tl.program_id(1) * TI + p // TJ
    j = tl.program_id(0) * TJ + p % TJ
    inside = (i < N) & (j < N)
    xj = j.to(tl.float32) - c
    yi = c - i.to(tl.float32)
    return i, j, inside, xj, yi


@_jit
def _store_tile(out_ptr, acc, group, lanes, item_ok, i, j, inside, N, o_group, o_lane, o_pix):
    """out[item, i, j] = acc for the tile's pixels inside the image and the items that exist."""
    out = out_ptr + group * o_group + (lanes * o_lane)[:, None] + ((i * N + j) * o_pix)[None, :]
    tl.store(out, acc, mask=inside[None, :] & item_ok)


@_jit
def _forward_kernel(planes_ptr, rays_ptr, out_ptr, B, N, V, D, rays_bstride,
                    p_group, p_lane, p_plane, p_pix, o_group, o_lane, o_ray,
                    BLOCK_D: tl.constexpr, ITEMS: tl.constexpr):
    """out[item, v, d] = w·Σ_ℓ lerp(plane_p[ℓ, :], clamp(a + b·ℓ, −1, N)) for the ray (p, a, b, w) of (v, d),
    for the ITEMS items of one group at once (they share the ray arithmetic; per-item tables need
    ITEMS = 1). ``planes`` holds the image and its transpose (plane 0, 1), addressed
    ``g·p_group + lane·p_lane + p·p_plane + pixel·p_pix``; ``out`` ``g·o_group + lane·o_lane + ray·o_ray``."""
    d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    v = tl.program_id(1)
    group, lanes, item_ok = _lanes(B, ITEMS)
    valid = d < D
    ray = rays_ptr + group * ITEMS * rays_bstride + (v * D + d).to(tl.int64) * 4
    plane = tl.load(ray, mask=valid, other=0.0)
    a = tl.load(ray + 1, mask=valid, other=-2.0)
    b = tl.load(ray + 2, mask=valid, other=0.0)
    w = tl.load(ray + 3, mask=valid, other=0.0)
    nf = N.to(tl.float32)
    # lines ℓ on which the ray can touch the image: −1 < a + b·ℓ < N (all lines when b = 0)
    safe_b = tl.where(b == 0.0, 1.0, b)
    t0 = (-1.0 - a) / safe_b
    t1 = (nf - a) / safe_b
    lo = tl.where(b == 0.0, 0.0, tl.minimum(t0, t1))
    hi = tl.where(b == 0.0, nf, tl.maximum(t0, t1))
    lo = tl.where(valid, lo, 3.0e38)
    hi = tl.where(valid, hi, -3.0e38)
    start = tl.maximum(tl.floor(tl.min(lo, axis=0)), 0.0).to(tl.int32)
    stop = tl.minimum(tl.ceil(tl.max(hi, axis=0)) + 1.0, nf).to(tl.int32)
    base = planes_ptr + group * p_group + (lanes * p_lane)[:, None] + (plane.to(tl.int64) * p_plane)[None, :]
    acc = tl.zeros([ITEMS, BLOCK_D], dtype=tl.float32)
    for ell in range(start, stop):
        pos = a + b * ell
        pos = tl.minimum(tl.maximum(pos, -1.0), nf)
        q0f = tl.floor(pos)
        f = (pos - q0f)[None, :]
        q0 = q0f.to(tl.int32)
        ptr = base + ((ell * N + q0) * p_pix)[None, :]
        m0 = (valid & (q0 >= 0) & (q0 < N))[None, :] & item_ok
        m1 = (valid & (q0 >= -1) & (q0 < N - 1))[None, :] & item_ok
        v0 = tl.load(ptr, mask=m0, other=0.0)
        v1 = tl.load(ptr + p_pix, mask=m1, other=0.0)
        acc += v0 + f * (v1 - v0)
    out = out_ptr + group * o_group + (lanes * o_lane)[:, None] + ((v * D + d) * o_ray)[None, :]
    tl.store(out, acc * w[None, :], mask=valid[None, :] & item_ok)


@_jit
def _adjoint_parallel_kernel(y_ptr, view_ptr, out_ptr, B, N, V, D, view_bstride, d0s, c,
                             s_group, s_lane, s_bin, o_group, o_lane, o_pix,
                             TI: tl.constexpr, TJ: tl.constexpr, TAPS: tl.constexpr, ITEMS: tl.constexpr):
    """out[item, i, j] = Σ_v (1/m_v)·Σ_k max(0, 1 − |k − u_v|·spacing/m_v)·y[item, v, k],
    u_v = (x cos θ + y sin θ − det₀)/spacing, for the ITEMS items of one group at once (they share the
    tap weights; per-item angles need ITEMS = 1). ``y`` is addressed ``g·s_group + lane·s_lane +
    (v·D + k)·s_bin``, ``out`` ``g·o_group + lane·o_lane + (i·N + j)·o_pix``."""
    i, j, inside, xj, yi = _pixel_tile(N, c, TI, TJ)
    group, lanes, item_ok = _lanes(B, ITEMS)
    acc = tl.zeros([ITEMS, TI * TJ], dtype=tl.float32)
    sino = y_ptr + group * s_group + (lanes * s_lane)[:, None]
    views = view_ptr + group * ITEMS * view_bstride
    for v in range(V):
        cs = tl.load(views + v * 5)
        sn = tl.load(views + v * 5 + 1)
        mh = tl.load(views + v * 5 + 2)
        inv_h = tl.load(views + v * 5 + 3)
        inv_m = tl.load(views + v * 5 + 4)
        u = cs * xj + (sn * yi - d0s)
        first = tl.floor(u - mh) + 1.0
        part = tl.zeros([ITEMS, TI * TJ], dtype=tl.float32)
        for k in tl.static_range(TAPS):
            dk = first + k
            weight = tl.maximum(1.0 - tl.abs(dk - u) * inv_h, 0.0)
            di = dk.to(tl.int32)
            ok = (inside & (di >= 0) & (di < D))[None, :] & item_ok
            part += tl.load(sino + ((v * D + di) * s_bin)[None, :], mask=ok, other=0.0) * weight[None, :]
        acc += part * inv_m
    _store_tile(out_ptr, acc, group, lanes, item_ok, i, j, inside, N, o_group, o_lane, o_pix)


@_jit
def _atan(z):
    """arctan for float32 tensors: two argument halvings atan z = 2·atan(z/(1+√(1+z²))) then the Taylor
    series to z¹⁵ on |z| < tan(π/8) (absolute error < 1e-7 rad)."""
    t = z / (1.0 + tl.sqrt(1.0 + z * z))
    t = t / (1.0 + tl.sqrt(1.0 + t * t))
    t2 = t * t
    p = -1.0 / 15.0
    p = p * t2 + 1.0 / 13.0
    p = p * t2 - 1.0 / 11.0
    p = p * t2 + 1.0 / 9.0
    p = p * t2 - 1.0 / 7.0
    p = p * t2 + 1.0 / 5.0
    p = p * t2 - 1.0 / 3.0
    p = p * t2 + 1.0
    return 4.0 * t * p


@_jit
def _adjoint_fan_kernel(y_ptr, view_ptr, rays_ptr, det_ptr, out_ptr, B, N, V, D, view_bstride, rays_bstride,
                        c, rs, length, det0, spacing, margin, s_group, s_lane, s_bin, o_group, o_lane, o_pix,
                        TI: tl.constexpr, TJ: tl.constexpr, TAPS: tl.constexpr, EQUIANGULAR: tl.constexpr,
                        ITEMS: tl.constexpr):
    """out[item, i, j] = Σ_v Σ_k inv_m[v,k]·max(0, 1 − |δ|·inv_m[v,k])·y[item, v, k], δ = p_s cos γ_k − p_r sin γ_k,
    for the ITEMS items of one group at once (per-item angles need ITEMS = 1); strides as in
    :func:`_adjoint_parallel_kernel`."""
    i, j, inside, xj, yi = _pixel_tile(N, c, TI, TJ)
    group, lanes, item_ok = _lanes(B, ITEMS)
    acc = tl.zeros([ITEMS, TI * TJ], dtype=tl.float32)
    sino = y_ptr + group * s_group + (lanes * s_lane)[:, None]
    views = view_ptr + group * ITEMS * view_bstride
    rays = rays_ptr + group * ITEMS * rays_bstride
    for v in range(V):
        cv = tl.load(views + v * 2)
        sv = tl.load(views + v * 2 + 1)
        p_s = cv * xj + sv * yi
        p_r = (-sv) * xj + (cv * yi + rs)
        tan_a = 1.0 / tl.sqrt(tl.maximum(p_s * p_s + p_r * p_r - 1.0, 1e-12))
        tan_g = p_s / p_r
        if EQUIANGULAR:
            lower = (_atan(tan_g) - _atan(tan_a)) * length
        else:
            lower = length * (tan_g - tan_a) / (1.0 + tan_g * tan_a)
        first = tl.floor((lower - det0) / spacing - margin) + 1.0
        for k in tl.static_range(TAPS):
            dk = first + k
            di = dk.to(tl.int32)
            ok = inside & (di >= 0) & (di < D)
            ray_cos = tl.load(det_ptr + di * 2, mask=ok, other=0.0)
            ray_sin = tl.load(det_ptr + di * 2 + 1, mask=ok, other=0.0)
            inv_m = tl.load(rays + (v * D + di).to(tl.int64) * 4 + 3, mask=ok, other=0.0)
            delta = p_s * ray_cos - p_r * ray_sin
            weight = inv_m * tl.maximum(1.0 - tl.abs(delta) * inv_m, 0.0)
            val = tl.load(sino + ((v * D + di) * s_bin)[None, :], mask=ok[None, :] & item_ok, other=0.0)
            acc += val * weight[None, :]
    _store_tile(out_ptr, acc, group, lanes, item_ok, i, j, inside, N, o_group, o_lane, o_pix)


# ---------------------------------------------------------------------------------------------------
# Host side: tables (float64 → float32, as in physics.ct) and launches
# ---------------------------------------------------------------------------------------------------
class JosephProjector:
    """The Triton forward/adjoint pair for one :class:`physics.ct.ParallelBeam` or :class:`physics.ct.FanBeam`.

    ``forward``: ``[B, 1, N, N]`` float32 → ``[B, 1, views, detectors]``; ``adjoint`` the exact
    transpose. The tables (per-ray Joseph coefficients ``rays`` ``[Bg, V, D, 4]`` = (plane, a, b, w),
    per-view constants ``views``, the fan's ray angles ``dets``) are built at construction from the
    same float64 formulas as :class:`physics.ct.Radon` and copied once per device; ``Bg`` is 1 for
    shared angles or B for per-item angles. The projector keeps no reference to the geometry.
    """

    def __init__(self, geometry: "_ct.Geometry") -> None:
        if not isinstance(geometry, (_ct.ParallelBeam, _ct.FanBeam)):
            raise ValueError(f"geometry must be a physics.ct.ParallelBeam or FanBeam, received {type(geometry).__name__}")
        g = geometry
        self.fan = isinstance(g, _ct.FanBeam)
        self.image_size, self.views, self.detectors = g.image_size, g.views, g.detectors
        self.detector_spacing, self.batch = g.detector_spacing, g.batch
        if self.fan:
            self.source_distance, self.length = g.source_distance, g._length
            self.equiangular = g.detector == "equiangular"
            self.taps = _ct._fan_taps(g) + 1  # one more than the torch path: the window may start one early
        else:
            self.taps = max(1, math.ceil(2.0 / g.detector_spacing - 1e-12))
        self._cpu_tables = self._build_tables(g)
        self._tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._tuned: dict[tuple, LaunchConfig] = {}  # (direction, batch, device) → the fastest launch

    def _build_tables(self, g: "_ct.Geometry") -> dict[str, torch.Tensor]:
        angle_sets = g.angles[None] if g.angles.ndim == 1 else g.angles  # [Bg, V] float64
        rays, views = [], []
        for angles in angle_sets:
            cos64, sin64 = torch.cos(angles), torch.sin(angles)
            if self.fan:
                ray_cos, ray_sin = g.ray_angles()
                lines = _ct._fan_ray_lines(cos64, sin64, ray_cos, ray_sin, g.source_distance)
            else:
                lines = _ct._parallel_ray_lines(cos64, sin64, g.detector_positions())
            plane, a, b, w = _ct._joseph_coefficients(*lines, g.image_size)
            rays.append(torch.stack([t.to(torch.float32) for t in (plane, a, b, w)], dim=-1))
            cos, sin = cos64.to(torch.float32), sin64.to(torch.float32)  # float32, as the torch adjoint
            if self.fan:
                views.append(torch.stack([cos, sin], dim=-1))
            else:
                m = torch.maximum(cos.abs(), sin.abs())
                s = g.detector_spacing
                views.append(torch.stack([cos / s, sin / s, m / s, s / m, 1.0 / m], dim=-1))
        tables = {"rays": torch.stack(rays).contiguous(), "views": torch.stack(views).contiguous()}
        if self.fan:
            ray_cos, ray_sin = g.ray_angles()
            tables["dets"] = torch.stack([ray_cos, ray_sin], dim=-1).to(torch.float32).contiguous()
        return tables

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The tables on ``device`` (copied once and cached)."""
        if device not in self._tables:
            self._tables[device] = {k: v.to(device) for k, v in self._cpu_tables.items()}
        return self._tables[device]

    # -- maps ---------------------------------------------------------------------------------
    def _check(self, t: torch.Tensor, shape: tuple, what: str) -> None:
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or tuple(t.shape[1:]) != shape or t.dtype != torch.float32:
            raise ValueError(f"expected a float32 {what} of shape [B, {', '.join(map(str, shape))}], received "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        gb = self.batch
        if gb is not None and t.shape[0] != gb:
            raise ValueError(f"the geometry holds angles for a batch of {gb}, received {what} with batch {t.shape[0]}")

    # -- launch choice ------------------------------------------------------------------------------
    def config(self, direction: str, t: torch.Tensor) -> LaunchConfig:
        """The launch for ``direction`` on ``t``'s batch and device: on a GPU the fastest candidate
        (:func:`candidate_configs`), timed once per batch size and cached, like ``triton.autotune``;
        the default candidate on the CPU interpreter, during CUDA-graph capture, or with
        ``MEDRECON_CT_TUNE=0``."""
        shared = self.tables(t.device)["rays"].shape[0] == 1
        options = candidate_configs(direction, t.shape[0], shared)
        key = (direction, t.shape[0], t.device)
        if key in self._tuned:
            return self._tuned[key]
        if (len(options) == 1 or t.device.type != "cuda" or torch.cuda.is_current_stream_capturing()
                or os.environ.get("MEDRECON_CT_TUNE", "1") == "0"):
            return options[0]
        run = self._forward_with if direction == "forward" else self._adjoint_with
        times = []
        for cfg in options:
            run(t, cfg)  # compile and warm up
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(_TUNE_REPEATS):
                run(t, cfg)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        self._tuned[key] = options[min(range(len(options)), key=times.__getitem__)]
        return self._tuned[key]

    def forward(self, x: torch.Tensor, config: Optional[LaunchConfig] = None) -> torch.Tensor:
        """Ray-driven Joseph projection ``[B, 1, N, N]`` → ``[B, 1, V, D]`` (float32, Triton); ``config``
        overrides the launch chosen by :meth:`config`."""
        self._check(x, (1, self.image_size, self.image_size), "image")
        return self._forward_with(x, self._valid(config, "forward", x) if config else self.config("forward", x))

    def adjoint(self, y: torch.Tensor, config: Optional[LaunchConfig] = None) -> torch.Tensor:
        """Pixel-driven exact transpose ``[B, 1, V, D]`` → ``[B, 1, N, N]`` (float32, Triton, gather only)."""
        self._check(y, (1, self.views, self.detectors), "sinogram")
        return self._adjoint_with(y, self._valid(config, "adjoint", y) if config else self.config("adjoint", y))

    def _valid(self, cfg: LaunchConfig, direction: str, t: torch.Tensor) -> LaunchConfig:
        """Reject launches the kernels cannot run: unknown layouts, blocks of the wrong rank or not powers
        of two, and several items per program with per-item angles (a group shares one item's tables)."""
        pow2 = all(b > 0 and b & (b - 1) == 0 for b in (cfg.items, *cfg.block))
        rank = 1 if direction == "forward" else 2
        per_item = self.tables(t.device)["rays"].shape[0] != 1
        if cfg.layout not in ("batch-outer", "batch-inner") or len(cfg.block) != rank or not pow2 or (per_item and cfg.items != 1):
            raise ValueError(f"invalid {direction} launch {cfg}: layout batch-outer or batch-inner, {rank} block size(s) "
                             f"and items that are powers of two, items = 1 for angles per batch item")
        return cfg

    # -- launches -----------------------------------------------------------------------------------
    @staticmethod
    def _items_inner(t: torch.Tensor, items: int) -> torch.Tensor:
        """``[B, 1, H, W]`` → a ``[G, H, W, items]`` view with the items innermost (zero-padded to
        ``G·items``; the caller's copy makes it contiguous)."""
        b = t.shape[0]
        g = triton.cdiv(b, items)
        if g * items != b:
            t = torch.cat((t, t.new_zeros((g * items - b, *t.shape[1:]))))
        return t.view(g, items, *t.shape[2:]).permute(0, 2, 3, 1)

    @staticmethod
    def _items_outer(t: torch.Tensor, batch: int) -> torch.Tensor:
        """The inverse of :meth:`_items_inner`: ``[G, H, W, items]`` → ``[batch, 1, H, W]``."""
        g, h, w, items = t.shape
        return t.permute(0, 3, 1, 2).reshape(g * items, 1, h, w)[:batch].contiguous()

    def _forward_with(self, x: torch.Tensor, cfg: LaunchConfig) -> torch.Tensor:
        n, v, d, b = self.image_size, self.views, self.detectors, x.shape[0]
        t = self.tables(x.device)
        shared = t["rays"].shape[0] == 1
        items = cfg.items
        grid = (triton.cdiv(d, cfg.block[0]), v, triton.cdiv(b, items))
        if cfg.layout == "batch-inner":
            img = self._items_inner(x, items)  # [G, N, N, items] view
            planes = torch.stack((img, img.transpose(1, 2)), dim=1)  # [G, 2, N, N, items], one contiguous copy
            out = torch.empty((grid[2], v, d, items), dtype=x.dtype, device=x.device)
            strides = (2 * n * n * items, 1, n * n * items, items, v * d * items, 1, items)
        else:
            img = x[:, 0]
            planes = torch.stack((img, img.transpose(-1, -2)), dim=1).contiguous()  # [B, 2, N, N]
            out = torch.empty((b, 1, v, d), dtype=x.dtype, device=x.device)
            strides = (items * 2 * n * n, 2 * n * n, n * n, 1, items * v * d, v * d, 1)
        _forward_kernel[grid](planes, t["rays"], out, b, n, v, d, 0 if shared else v * d * 4, *strides,
                              BLOCK_D=cfg.block[0], ITEMS=items)
        return self._items_outer(out, b) if cfg.layout == "batch-inner" else out

    def _adjoint_with(self, y: torch.Tensor, cfg: LaunchConfig) -> torch.Tensor:
        n, v, d, b = self.image_size, self.views, self.detectors, y.shape[0]
        t = self.tables(y.device)
        shared = t["views"].shape[0] == 1
        items = cfg.items
        ti, tj = cfg.block
        grid = (triton.cdiv(n, tj), triton.cdiv(n, ti), triton.cdiv(b, items))
        if cfg.layout == "batch-inner":
            sino = self._items_inner(y, items).contiguous()  # [G, V, D, items]
            out = torch.empty((grid[2], n, n, items), dtype=y.dtype, device=y.device)
            strides = (v * d * items, 1, items, n * n * items, 1, items)
        else:
            sino = y.contiguous()
            out = torch.empty((b, 1, n, n), dtype=y.dtype, device=y.device)
            strides = (items * v * d, v * d, 1, items * n * n, n * n, 1)
        c = (n - 1) / 2
        spacing = self.detector_spacing
        det0 = -(d - 1) / 2 * spacing
        if self.fan:
            _adjoint_fan_kernel[grid](
                sino, t["views"], t["rays"], t["dets"], out, b, n, v, d,
                0 if shared else v * 2, 0 if shared else v * d * 4,
                c, self.source_distance, self.length, det0, spacing, _WINDOW_MARGIN, *strides,
                TI=ti, TJ=tj, TAPS=self.taps, EQUIANGULAR=self.equiangular, ITEMS=items)
        else:
            d0s = float(torch.tensor(det0 / spacing, dtype=torch.float32))
            _adjoint_parallel_kernel[grid](
                sino, t["views"], out, b, n, v, d, 0 if shared else v * 5, d0s, c, *strides,
                TI=ti, TJ=tj, TAPS=self.taps, ITEMS=items)
        return self._items_outer(out, b) if cfg.layout == "batch-inner" else out


_PROJECTORS: "weakref.WeakKeyDictionary[_ct.Geometry, JosephProjector]" = weakref.WeakKeyDictionary()


def _projector(geometry: "_ct.Geometry") -> JosephProjector:
    """One cached :class:`JosephProjector` (and its device tables) per geometry object."""
    proj = _PROJECTORS.get(geometry)
    if proj is None:
        proj = _PROJECTORS[geometry] = JosephProjector(geometry)
    return proj


def _torch_radon(geometry: "_ct.Geometry") -> "_ct.Radon":
    return _ct.Radon(geometry)  # cheap: the operator holds only the geometry


def radon_forward(x: torch.Tensor, geometry: "_ct.Geometry", *, backend: str = "auto") -> torch.Tensor:
    """Joseph forward projection of :class:`physics.ct.Radon` (``[B,1,N,N]`` → ``[B,1,V,D]``).

    Triton for float32 when ``backend`` selects it (CUDA by default), else the torch path
    (``Radon(geometry)._forward`` inside :func:`physics.kernels.torch_only`).
    """
    if x.dtype == torch.float32 and resolve_backend(backend, x):
        return _projector(geometry).forward(x)
    with torch_only():
        return _torch_radon(geometry)._forward(x)


def radon_adjoint(y: torch.Tensor, geometry: "_ct.Geometry", *, backend: str = "auto") -> torch.Tensor:
    """The exact transpose of :func:`radon_forward` (``[B,1,V,D]`` → ``[B,1,N,N]``), gather only."""
    if y.dtype == torch.float32 and resolve_backend(backend, y):
        return _projector(geometry).adjoint(y)
    with torch_only():
        return _torch_radon(geometry)._adjoint(y)
