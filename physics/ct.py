"""CT forward models: parallel- and fan-beam geometries, a matched Radon operator, and FBP.

Coordinates and layout
----------------------
* Image ``x``: ``[B, 1, N, N]`` float32/float64. Pixels have size 1 and the image is centred on the
  origin: with ``c = (N - 1) / 2`` the centre of pixel ``(i, j)`` (row ``i``, column ``j``) is
  ``(x_j, y_i) = (j - c, c - i)``; x points right along the columns, y points **up** (row 0 is top).
* Sinogram ``y``: ``[B, 1, views, detectors]``; detector ``k`` of a view sits at
  ``det_k = (k - (D - 1) / 2) · detector_spacing`` (an offset along the detector; for the
  equiangular fan detector an arc length, i.e. the fan angle ``γ_k = det_k / (R_s + R_d)``).
* View angle ``θ`` (radians): the detector axis is ``e_s = (cos θ, sin θ)`` and the rays run along
  ``e_r = (-sin θ, cos θ)``. A parallel ray ``k`` is the line ``{p : ⟨p, e_s⟩ = det_k}``. A fan view
  has its source at ``S = -R_s e_r`` and its detector centre at ``+R_d e_r``; ray ``k`` leaves ``S``
  along ``cos γ_k e_r + sin γ_k e_s`` (equiangular) or passes through the flat-detector point
  ``R_d e_r + det_k e_s`` (flat). A fan ray is the parallel ray of angle ``θ - γ`` at offset
  ``R_s sin γ``.

Discretisation (Joseph 1982, "An improved algorithm for reprojecting rays through pixel images",
IEEE TMI 1:192-196): every ray is a line ``p + t e`` with unit direction ``e = (e_x, e_y)``.

* If ``|e_y| ≥ |e_x|`` the ray is *row-driven* (plane 0): it crosses every image row ``i`` once, at
  the fractional column ``pos_i = a + b·i`` with ``b = -e_x/e_y``, ``a = c + p_x + (c - p_y)·e_x/e_y``,
  and ``w = 1/|e_y|`` is the path length per row.
* Otherwise it is *column-driven* (plane 1) and the same formulas run on the transposed image
  ``xᵀ[j, i] = x[i, j]``: ``b = -e_y/e_x``, ``a = c - p_y + (c + p_x)·e_y/e_x``, ``w = 1/|e_x|``, and
  ``pos_j = a + b·j`` is the fractional row where the ray crosses column ``j``.
* The projection is ``y = w · Σ_ℓ lerp(plane[ℓ], pos_ℓ)``, ``ℓ = 0..N-1``, with linear interpolation
  between the two neighbouring pixels of line ``ℓ`` and zeros outside the image.

Equivalently the system matrix is, for ray ``r`` and pixel ``P`` (with ``δ`` the signed perpendicular
distance from the pixel centre to the ray and ``m_r = max(|e_x|, |e_y|)``)::

    A[r, P] = (1 / m_r) · max(0, 1 - |δ_r(P)| / m_r)

so the forward is computed **ray-driven** (each ray gathers 2 pixels per line, :func:`_joseph_forward`)
and the adjoint **pixel-driven** (each pixel gathers the few rays with ``|δ| < m`` in each view,
:func:`_joseph_adjoint_parallel`, :func:`_joseph_adjoint_fan`). Both evaluate the same entries, so the
pair is matched to rounding (dot test ~1e-7 in float32, ~1e-16 in float64), neither needs a scatter,
and memory is ``O(N² + views·detectors)`` plus one chunk of views (``_CHUNK_ELEMENTS`` elements).
For parallel beams ``δ = det_k - (x cos θ + y sin θ)``; for fan beams, in the view's frame
``p_s = ⟨P - S, e_s⟩``, ``p_r = ⟨P - S, e_r⟩``, ``δ = p_s cos γ_k - p_r sin γ_k``.

Exact float recipe of the torch reference (what a GPU kernel must reproduce, to ~1e-5):
per-ray coefficients ``(plane, a, b, w)`` and the fan per-ray tables are computed in float64 from the
float64 angles and cast to the input dtype; ``pos = a + b·ℓ`` (addcmul) is clamped to ``[-1, N]``,
``q0 = floor(pos)``, ``f = pos - q0`` and the value is ``(1-f)·P[ℓ, q0] + f·P[ℓ, q0+1]`` with
``P[ℓ, -1] = P[ℓ, N] = P[ℓ, N+1] = 0``. The adjoint recomputes ``δ`` per (view, pixel, tap) in the
input dtype.

Filtered back-projection (Kak & Slaney, *Principles of Computerized Tomographic Imaging*, 1988,
ch. 3: eq. 3.61 for the discrete ramp, §3.4.1 equiangular fan, §3.4.2 flat fan): see :meth:`Radon.fbp`.
Short-scan fan data use Parker weights (Parker 1982, Med. Phys. 9:254).

Relation to ``skimage.transform.radon(image, theta=deg, circle=True)`` for odd ``N`` and
``detectors=N``: ``theta_deg = degrees(θ)``, skimage's output row ``k`` is our detector ``k`` (same
direction, centre ``N // 2 = (N - 1)/2``), and its column ``v`` is our view ``v``: ``sino_skimage =
Radon(ParallelBeam(N, θ, detectors=N))(x)[0, 0].T`` up to the interpolation scheme (skimage rotates
the image bilinearly and sums columns). For even ``N`` skimage rotates about pixel ``N // 2``, half a
pixel off the image centre.
"""
from __future__ import annotations

import importlib
import math
from typing import Literal, Optional, Sequence, Union

import torch

from physics.kernels import use_numba, use_triton
from physics.operator import LinearOperator

__all__ = ["ParallelBeam", "FanBeam", "Radon", "FILTERS"]

#: Elements (per batch item) of the largest temporary of one chunk of views.
_CHUNK_ELEMENTS = 1 << 20

FILTERS = ("ramp", "shepp-logan", "cosine", "hann")

AnglesLike = Union[torch.Tensor, Sequence[float]]


# ----------------------------------------------------------------------------------------------
# Geometries
# ----------------------------------------------------------------------------------------------
def _as_angles(angles: AnglesLike) -> torch.Tensor:
    """Angles as a float64 tensor ``[views]`` or ``[B, views]``; ValueError on bad rank or values."""
    t = angles if isinstance(angles, torch.Tensor) else torch.as_tensor(angles)
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"angles must be real radians, received dtype {t.dtype}")
    t = t.detach().to(torch.float64)
    if t.ndim not in (1, 2) or t.shape[-1] < 1:
        raise ValueError(f"angles must have shape [views] or [B, views] with views ≥ 1, received {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"angles must be finite, received non-finite values in a tensor of shape {tuple(t.shape)}")
    return t


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or int(image_size) != image_size or int(image_size) < 2:
        raise ValueError(f"image_size must be an integer ≥ 2, received {image_size!r}")
    return int(image_size)


def _check_positive(name: str, value: float) -> float:
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite positive number, received {value!r}")
    return float(value)


def _check_detectors(detectors: Optional[int], default: int) -> int:
    if detectors is None:
        return default
    if isinstance(detectors, bool) or int(detectors) != detectors or int(detectors) < 1:
        raise ValueError(f"detectors must be an integer ≥ 1 (or None for {default}), received {detectors!r}")
    return int(detectors)


def _support_radius(n: int) -> float:
    """Radius beyond which no ray touches the image: pixel-centre corners plus the unit footprint."""
    return (n - 1) / 2 * math.sqrt(2.0) + 1.0


class _Geometry:
    image_size: int
    angles: torch.Tensor
    detectors: int
    detector_spacing: float

    @property
    def views(self) -> int:
        return int(self.angles.shape[-1])

    @property
    def batch(self) -> Optional[int]:
        """Items with their own angles (``None`` when the angles are shared by the whole batch)."""
        return None if self.angles.ndim == 1 or self.angles.shape[0] == 1 else int(self.angles.shape[0])

    def detector_positions(self) -> torch.Tensor:
        """``det_k = (k - (D-1)/2)·spacing`` (float64, ``[D]``)."""
        k = torch.arange(self.detectors, dtype=torch.float64)
        return (k - (self.detectors - 1) / 2) * self.detector_spacing

    def _item_angles(self, item: Optional[int]) -> torch.Tensor:
        if self.angles.ndim == 1:
            return self.angles
        return self.angles[0 if item is None or self.angles.shape[0] == 1 else item]


class ParallelBeam(_Geometry):
    """Parallel-beam geometry on an ``N × N`` image of unit pixels centred at the origin.

    Args:
        image_size: ``N``.
        angles: view angles θ in radians, ``[views]`` (any set: sparse-view, limited-angle, >180°) or
            ``[B, views]`` for per-item angles.
        detectors: detector count ``D``; default ``2·ceil((√2·(N-1)/2 + 1)/spacing) + 1``, which covers
            every ray that touches the image (≈ ``√2·N``).
        detector_spacing: detector pitch in pixels.
    """

    def __init__(
        self,
        image_size: int,
        angles: AnglesLike,
        detectors: Optional[int] = None,
        detector_spacing: float = 1.0,
    ) -> None:
        self.image_size = _check_size(image_size)
        self.angles = _as_angles(angles)
        self.detector_spacing = _check_positive("detector_spacing", detector_spacing)
        default = 2 * math.ceil(_support_radius(self.image_size) / self.detector_spacing) + 1
        self.detectors = _check_detectors(detectors, default)

    def __repr__(self) -> str:
        return (f"ParallelBeam(image_size={self.image_size}, views={self.views}, detectors={self.detectors}, "
                f"detector_spacing={self.detector_spacing})")


class FanBeam(_Geometry):
    """Fan-beam geometry (point source, equiangular arc or flat detector).

    Args:
        image_size: ``N``.
        angles: source angles β in radians (``[views]`` or ``[B, views]``); the source sits at
            ``R_s·(sin β, -cos β)``.
        source_distance: ``R_s``, source to rotation centre, in pixels; must exceed the image's
            support radius ``√2·(N-1)/2 + 1`` so every ray meets the image in front of the source.
        detector_distance: ``R_d ≥ 0``, rotation centre to detector centre.
        detectors: ``D``; default covers the fan through the image support.
        detector_spacing: pitch along the detector (arc length for ``"equiangular"``); default
            ``(R_s + R_d)/R_s``, i.e. one pixel at the rotation centre.
        detector: ``"equiangular"`` (curved, fan angle ``γ_k = det_k/(R_s+R_d)``) or ``"flat"``.
    """

    def __init__(
        self,
        image_size: int,
        angles: AnglesLike,
        source_distance: float,
        detector_distance: float,
        detectors: Optional[int] = None,
        detector_spacing: Optional[float] = None,
        detector: Literal["equiangular", "flat"] = "equiangular",
    ) -> None:
        self.image_size = _check_size(image_size)
        self.angles = _as_angles(angles)
        if detector not in ("equiangular", "flat"):
            raise ValueError(f"detector must be 'equiangular' or 'flat', received {detector!r}")
        self.detector = detector
        radius = _support_radius(self.image_size)
        rs = float(source_distance)
        if not math.isfinite(rs) or rs <= radius:
            raise ValueError(
                f"source_distance must be finite and > {radius:.3f} (the support radius of a {self.image_size}² "
                f"image), received {source_distance!r}: the source would lie inside the image circle"
            )
        rd = float(detector_distance)
        if not math.isfinite(rd) or rd < 0:
            raise ValueError(f"detector_distance must be finite and ≥ 0, received {detector_distance!r}")
        self.source_distance, self.detector_distance = rs, rd
        length = rs + rd
        self.detector_spacing = length / rs if detector_spacing is None else _check_positive(
            "detector_spacing", detector_spacing)
        fan = math.asin(radius / rs)  # half fan angle that covers the support
        if detector == "equiangular":
            default = 2 * math.ceil(fan * length / self.detector_spacing) + 1
        else:
            default = 2 * math.ceil(length * math.tan(fan) / self.detector_spacing) + 1
        self.detectors = _check_detectors(detectors, default)
        if detector == "equiangular" and (self.detectors - 1) / 2 * self.detector_spacing / length >= math.pi / 2:
            raise ValueError(
                f"the equiangular detector spans ±{(self.detectors - 1) / 2 * self.detector_spacing / length:.3f} rad; "
                f"expected less than ±π/2 (fewer detectors or a smaller spacing)"
            )

    @property
    def _length(self) -> float:
        return self.source_distance + self.detector_distance

    def ray_angles(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos γ_k, sin γ_k)`` of each ray relative to the central ray (float64, ``[D]``)."""
        det = self.detector_positions()
        if self.detector == "equiangular":
            gamma = det / self._length
            return torch.cos(gamma), torch.sin(gamma)
        norm = torch.sqrt(det.square() + self._length**2)
        return self._length / norm, det / norm

    def half_fan_angle(self) -> float:
        """Largest |γ| over the detector."""
        half = (self.detectors - 1) / 2 * self.detector_spacing
        return half / self._length if self.detector == "equiangular" else math.atan(half / self._length)

    def __repr__(self) -> str:
        return (f"FanBeam(image_size={self.image_size}, views={self.views}, source_distance={self.source_distance}, "
                f"detector_distance={self.detector_distance}, detectors={self.detectors}, "
                f"detector_spacing={self.detector_spacing:.6g}, detector={self.detector!r})")


Geometry = Union[ParallelBeam, FanBeam]


# ----------------------------------------------------------------------------------------------
# Pure per-chunk functions (the reference a GPU kernel must match)
# ----------------------------------------------------------------------------------------------
def _parallel_ray_lines(cos: torch.Tensor, sin: torch.Tensor, det: torch.Tensor):
    """Parallel rays ``[V, D]``: a point ``p = det·e_s`` and the unit direction ``e_r = (-sin, cos)``."""
    px, py = det * cos[:, None], det * sin[:, None]
    return px, py, (-sin)[:, None].expand_as(px), cos[:, None].expand_as(px)


def _fan_ray_lines(cos: torch.Tensor, sin: torch.Tensor, ray_cos: torch.Tensor, ray_sin: torch.Tensor, rs: float):
    """Fan rays ``[V, D]``: the source ``S = -R_s e_r`` and direction ``cos γ e_r + sin γ e_s``."""
    px = (rs * sin)[:, None].expand(-1, ray_cos.shape[0])
    py = (-rs * cos)[:, None].expand(-1, ray_cos.shape[0])
    ex = -ray_cos[None, :] * sin[:, None] + ray_sin[None, :] * cos[:, None]
    ey = ray_cos[None, :] * cos[:, None] + ray_sin[None, :] * sin[:, None]
    return px, py, ex, ey


def _joseph_coefficients(px, py, ex, ey, n: int):
    """Joseph line coefficients ``(plane, a, b, w)`` of rays ``p + t e`` (all ``[V, D]``).

    ``plane`` 0: crossing column of row ``i`` is ``a + b·i``; plane 1: crossing row of column ``j`` is
    ``a + b·j``; ``w`` is the path length per line. See the module docstring.
    """
    c = (n - 1) / 2
    rows = ey.abs() >= ex.abs()
    safe_ey = torch.where(rows, ey, torch.ones_like(ey))
    safe_ex = torch.where(rows, torch.ones_like(ex), ex)
    a = torch.where(rows, c + px + (c - py) * (ex / safe_ey), c - py + (c + px) * (ey / safe_ex))
    b = torch.where(rows, -ex / safe_ey, -ey / safe_ex)
    w = torch.where(rows, 1.0 / safe_ey.abs(), 1.0 / safe_ex.abs())
    return (~rows).long(), a, b, w


def _image_planes(img: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` → ``[B, 2, N, N+3]``: plane 0 is the image, plane 1 its transpose, each row
    zero-padded by one column on the left and two on the right, so column ``q`` of the image sits at
    padded column ``q + 1`` and ``q0 ∈ [-1, N]``, ``q0 + 1`` stay in bounds."""
    planes = torch.stack((img, img.transpose(-1, -2)), dim=1)
    return torch.nn.functional.pad(planes, (1, 2))


def _joseph_plane(plane: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_ℓ lerp(plane[ℓ], a + b·ℓ)`` for rays ``[R]`` on one padded plane ``[B, N, N+3]`` → ``[B, R]``.

    ``pos + 1`` is clamped to ``[0, N+1]`` (so truncation is the floor); line ``ℓ`` is the gather's row.
    """
    bsz, n = plane.shape[0], plane.shape[1]
    ell = torch.arange(n, dtype=a.dtype, device=a.device)[:, None]
    pos = torch.addcmul((a + 1.0)[None, :], ell, b[None, :]).clamp_(0.0, float(n + 1))  # [N, R]
    idx = pos.to(torch.long)
    frac = pos.sub_(idx)
    idx = idx[None].expand(bsz, -1, -1)
    v0 = plane.gather(2, idx)
    v1 = plane[..., 1:].gather(2, idx)  # the right neighbour: the same index one column further
    return torch.lerp(v0, v1, frac).sum(1)


def _joseph_forward(planes: torch.Tensor, plane: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                    w: torch.Tensor) -> torch.Tensor:
    """Ray-driven Joseph projection of one chunk: planes ``[B, 2, N, N+3]``, rays ``[V, D]`` → ``[B, V, D]``.

    ``y[r] = w[r] · Σ_ℓ lerp(planes[plane[r], ℓ], a[r] + b[r]·ℓ)``.
    """
    flat = plane.reshape(-1)
    out = planes.new_zeros(planes.shape[0], flat.shape[0])
    for p in (0, 1):
        sel = (flat == p).nonzero().squeeze(1)
        if sel.numel() == flat.shape[0]:
            out = _joseph_plane(planes[:, p], a.reshape(-1), b.reshape(-1))
        elif sel.numel():
            out[:, sel] = _joseph_plane(planes[:, p], a.reshape(-1)[sel], b.reshape(-1)[sel])
    return out.reshape(planes.shape[0], *a.shape) * w


def _pixel_axes(n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``x_j = j - c`` ``[N]`` and ``y_i = c - i`` ``[N]``."""
    x = torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2
    return x, -x


def _parallel_detector_index(cos, sin, n: int, det0: float, spacing: float) -> torch.Tensor:
    """Continuous detector index ``(x cos θ + y sin θ - det_0)/spacing`` of every pixel centre, ``[V, N, N]``."""
    x, y = _pixel_axes(n, cos.dtype, cos.device)
    return (cos / spacing)[:, None, None] * x + ((sin / spacing)[:, None, None] * y[:, None] - det0 / spacing)


def _tap_index(first: torch.Tensor, detectors: int, pad: int) -> torch.Tensor:
    """Flat index of detector ``first`` (``[V, N, N]``, integer-valued, clamped to ``[-pad, D]``) of view
    ``v`` in a ``[V, pad + D + pad]`` table; later taps are ``+1, +2, ...``."""
    v = first.shape[0]
    offset = torch.arange(v, device=first.device, dtype=first.dtype) * (detectors + 2 * pad) + pad
    return (first.clamp(-pad, detectors) + offset.reshape(v, 1, 1)).to(torch.long)


def _gather_taps(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table`` ``[B, V, Dp]`` gathered at flat ``idx`` ``[V, ...]`` → ``[B, V, ...]``."""
    return table.reshape(table.shape[0], -1).index_select(1, idx.reshape(-1)).reshape(table.shape[0], *idx.shape)


def _joseph_adjoint_parallel(sino: torch.Tensor, cos, sin, n: int, det0: float, spacing: float, taps: int):
    """Pixel-driven transpose of :func:`_joseph_forward` for parallel rays: ``[B, V, D]`` → ``[B, N, N]``.

    Pixel ``P`` receives ``Σ_v Σ_k (1/m_v)·max(0, 1 - |k - u_v(P)|/h_v)·y[v, k]`` with ``u`` the
    pixel's continuous detector index (:func:`_parallel_detector_index`), ``m_v = max(|cos θ|, |sin θ|)``
    and ``h_v = m_v/spacing``; the taps are ``k = floor(u - h) + 1 + t``, ``t < taps``.
    """
    detectors = sino.shape[-1]
    m = torch.maximum(cos.abs(), sin.abs())
    table = torch.nn.functional.pad(sino / m[:, None], (taps, taps))
    u = _parallel_detector_index(cos, sin, n, det0, spacing)  # [V, N, N]
    inv_h = (spacing / m)[:, None, None]
    first = (u - (m / spacing)[:, None, None]).floor_().add_(1)
    idx = _tap_index(first, detectors, taps)
    offset = first.sub_(u)  # k - u for the first tap
    out = sino.new_zeros(sino.shape[0], n, n)
    for k in range(taps):
        weight = (offset + k).abs_().mul_(inv_h).neg_().add_(1).clamp_min_(0)
        out += (_gather_taps(table, idx + k) * weight).sum(1)
    return out


def _fan_pixel_frame(cos, sin, n: int, rs: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres relative to the source in the view frame: ``p_s = ⟨P-S, e_s⟩``, ``p_r = ⟨P-S, e_r⟩``, ``[V, N, N]``."""
    x, y = _pixel_axes(n, cos.dtype, cos.device)
    c, s = cos[:, None, None], sin[:, None, None]
    p_s = c * x + s * y[:, None]
    p_r = (-s) * x + (c * y[:, None] + rs)
    return p_s, p_r


def _fan_window_start(p_s, p_r, geometry: FanBeam) -> torch.Tensor:
    """First detector index whose ray can pass within distance 1 of the pixel (floor(lower bound) + 1)."""
    length, spacing, det0 = geometry._length, geometry.detector_spacing, -(geometry.detectors - 1) / 2 * geometry.detector_spacing
    dist2 = p_s.square() + p_r.square()
    tan_a = (dist2 - 1.0).clamp_min(1e-12).rsqrt()  # tan of the half angle subtended by a unit distance
    tan_g = p_s / p_r
    if geometry.detector == "equiangular":
        lower = (torch.atan(tan_g) - torch.atan(tan_a)) * length
    else:
        lower = length * (tan_g - tan_a) / (1.0 + tan_g * tan_a)
    return ((lower - det0) / spacing).floor_().add_(1)


def _fan_taps(geometry: FanBeam) -> int:
    """Upper bound on the detectors whose ray passes within distance 1 of one pixel centre."""
    n, rs, length = geometry.image_size, geometry.source_distance, geometry._length
    r = (n - 1) / 2 * math.sqrt(2.0)
    alpha = math.asin(1.0 / (rs - r))
    gamma = math.asin(r / rs)
    if geometry.detector == "equiangular":
        span = 2 * alpha * length
    else:
        span = length * (math.tan(gamma + alpha) - math.tan(gamma - alpha))
    return max(1, int(math.ceil(span / geometry.detector_spacing)))


def _joseph_adjoint_fan(sino: torch.Tensor, inv_m: torch.Tensor, cos, sin, ray_cos, ray_sin,
                        geometry: FanBeam, taps: int) -> torch.Tensor:
    """Pixel-driven transpose of :func:`_joseph_forward` for fan rays: ``[B, V, D]`` → ``[B, N, N]``.

    ``inv_m[v, k] = 1/max(|e_x|, |e_y|)`` of each ray; pixel ``P`` receives
    ``Σ inv_m·max(0, 1 - |δ|·inv_m)·y`` over the taps, ``δ = p_s cos γ_k - p_r sin γ_k``.
    """
    n, detectors, v = geometry.image_size, sino.shape[-1], sino.shape[1]
    p_s, p_r = _fan_pixel_frame(cos, sin, n, geometry.source_distance)
    idx = _tap_index(_fan_window_start(p_s, p_r, geometry), detectors, taps)
    pad = (taps, taps)
    table_y = torch.nn.functional.pad(sino * inv_m, pad)
    table_m = torch.nn.functional.pad(inv_m, pad)[None]
    table_c = torch.nn.functional.pad(ray_cos, pad).expand(1, v, -1)
    table_s = torch.nn.functional.pad(ray_sin, pad).expand(1, v, -1)
    out = sino.new_zeros(sino.shape[0], n, n)
    for k in range(taps):
        ik = idx + k
        delta = p_s * _gather_taps(table_c, ik)[0] - p_r * _gather_taps(table_s, ik)[0]
        weight = delta.abs_().mul_(_gather_taps(table_m, ik)[0]).neg_().add_(1).clamp_min_(0)
        out += (_gather_taps(table_y, ik) * weight).sum(1)
    return out


def _lerp_backproject(q: torch.Tensor, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ_v weight[v]·q_v(u[v])`` with linear interpolation in the detector index (zero outside):
    ``q`` ``[B, V, D]``, ``u`` and ``weight`` ``[V, N, N]`` → ``[B, N, N]``."""
    detectors = q.shape[-1]
    table = torch.nn.functional.pad(q, (2, 2))
    u = u.clamp(-1.0, float(detectors))
    d0 = u.floor()
    frac = u - d0
    idx = _tap_index(d0, detectors, 2)
    lo = _gather_taps(table, idx)
    hi = _gather_taps(table, idx + 1)
    return (torch.lerp(lo, hi, frac) * weight).sum(1)


# ----------------------------------------------------------------------------------------------
# Filters and FBP weights
# ----------------------------------------------------------------------------------------------
def _fourier_filter(detectors: int, filter: str, dtype, device, fan_alpha: Optional[float] = None) -> torch.Tensor:
    """Frequency response (length ``P`` = next power of two ≥ 2D) of the discrete ramp filter of
    Kak & Slaney eq. 3.61 in sample units (``h(0) = 1/4``, ``h(n odd) = -1/(πn)²``, ``h(n even) = 0``),
    times the window. For an equiangular fan (``fan_alpha`` = angular spacing) the kernel is
    ``½ (nα / sin nα)² h(n)`` (§3.4.1; the factor ½ of a full 2π scan is included there and in the
    flat fan branch of :meth:`Radon.fbp`). Zero padding to ``P`` makes the convolution linear.
    """
    size = max(64, 1 << math.ceil(math.log2(2 * detectors)))
    k = torch.arange(size, dtype=torch.float64)
    k = torch.where(k <= size // 2, k, k - size)
    h = torch.zeros(size, dtype=torch.float64)
    h[k == 0] = 0.25
    odd = (k.abs() % 2) == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    if fan_alpha is not None:
        x = k * fan_alpha
        inside = (k != 0) & (k.abs() < detectors)  # lags that can act on D samples: |nα| < π
        ratio = torch.where(inside, x / torch.sin(torch.where(inside, x, torch.ones_like(x))), torch.ones_like(x))
        h = 0.5 * ratio.square() * h
    response = torch.fft.fft(h).real
    f = torch.fft.fftfreq(size, dtype=torch.float64)  # cycles per sample in [-0.5, 0.5)
    if filter == "shepp-logan":
        response = response * torch.sinc(f)
    elif filter == "cosine":
        response = response * torch.cos(math.pi * f)
    elif filter == "hann":
        response = response * 0.5 * (1 + torch.cos(2 * math.pi * f))
    return response.to(dtype=dtype, device=device)


def _apply_filter(sino: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """Linear convolution of each detector row with the kernel whose FFT is ``response`` ``[P]``."""
    detectors, size = sino.shape[-1], response.shape[0]
    spectrum = torch.fft.rfft(sino, n=size, dim=-1) * response[: size // 2 + 1]
    return torch.fft.irfft(spectrum, n=size, dim=-1)[..., :detectors]


def _angular_weights(angles: torch.Tensor, period: float) -> tuple[torch.Tensor, bool, float]:
    """Quadrature weights Δθ_v of views on a circle of ``period`` (π for parallel, 2π for fan).

    Each view gets half the gap to each neighbour in angular order (angles modulo ``period``). A gap
    larger than twice the median gap is a missing wedge (limited angle / short scan): it counts as the
    median gap instead. Returns ``(weights [V] float64, wedge_found, median_gap)``.
    """
    v = angles.shape[0]
    if v == 1:
        return torch.full((1,), period, dtype=torch.float64), False, period
    wrapped = torch.remainder(angles, period)
    order = torch.argsort(wrapped)
    sorted_ = wrapped[order]
    gaps = torch.diff(sorted_, append=sorted_[:1] + period)  # gap after each sorted view
    median = float(gaps.median())
    if median <= 0:
        median = period / v
    wedge = gaps > 2 * median
    capped = torch.where(wedge, torch.full_like(gaps, median), gaps)
    w_sorted = 0.5 * (capped + torch.roll(capped, 1))
    weights = torch.empty_like(w_sorted)
    weights[order] = w_sorted
    return weights, bool(wedge.any()), median


def _parker_weights(angles: torch.Tensor, gamma: torch.Tensor, median_gap: float) -> torch.Tensor:
    """Parker short-scan weights ``[V, D]`` (float64) for fan angles β and ray fan angles γ.

    The scan starts after the largest gap; ``β`` is measured from there (plus half a gap) over the
    scan length ``Λ = span + gap``, and the overscan half-angle is ``g = (Λ - π)/2``. In this module's
    convention the conjugate of ray ``(β, γ)`` is ``(β + π - 2γ, -γ)``, so Parker's formula
    (written for conjugates ``(β + π + 2γ', -γ')``) is used with ``γ' = -γ``. Exact (weights of
    conjugate pairs sum to 1) when ``g ≥ max |γ|``; for shorter scans the weights are clipped to [0, 1]
    and the reconstruction is approximate.
    """
    two_pi = 2 * math.pi
    wrapped = torch.remainder(angles, two_pi)
    sorted_, _ = torch.sort(wrapped)
    gaps = torch.diff(sorted_, append=sorted_[:1] + two_pi)
    start = sorted_[(int(torch.argmax(gaps)) + 1) % sorted_.shape[0]]
    beta = torch.remainder(wrapped - start, two_pi) + median_gap / 2
    span = float(beta.max() - beta.min()) + median_gap
    g = max((span - math.pi) / 2, 1e-6)
    gp = -gamma[None, :]
    beta = beta[:, None]
    lo = (g - gp).clamp_min(1e-12)
    hi = (g + gp).clamp_min(1e-12)
    w = torch.ones(beta.shape[0], gp.shape[1], dtype=torch.float64)
    rise = torch.sin(math.pi / 4 * beta / lo).square()
    fall = torch.sin(math.pi / 4 * (math.pi + 2 * g - beta) / hi).square()
    w = torch.where(beta < 2 * (g - gp), rise, w)
    w = torch.where(beta > math.pi - 2 * gp, fall, w)
    w = torch.where((beta < 0) | (beta > math.pi + 2 * g), torch.zeros_like(w), w)
    return w.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# The operator
# ----------------------------------------------------------------------------------------------
class Radon(LinearOperator):
    """Matched Joseph projector ``A``: image ``[B, 1, N, N]`` → sinogram ``[B, 1, views, detectors]``.

    ``forward`` is the ray-driven Joseph line integral and ``adjoint`` its exact transpose computed
    pixel-driven (see the module docstring for the discretisation and the system-matrix formula);
    both are real (``idomain = "real"``), float32 or float64, on the input's device. Line integrals
    are in pixel units: a uniform disk of value 1 and radius r projects to ``2√(r² - s²)``.

    The operator holds only the geometry (angles ``[views]`` or ``[B, views]`` and scalars): views
    are processed in chunks of at most ``_CHUNK_ELEMENTS`` temporaries per batch item, so memory is
    ``O(N² + views·detectors)``. With per-item angles ``[B, views]`` the operator's ``batch`` is B.

    Convention mapping to ``skimage.transform.radon(img, theta=np.degrees(angles), circle=True)``
    (odd N, ``ParallelBeam(N, angles, detectors=N)``): ``skimage_sino == R(img)[0, 0].T`` (rows =
    detectors in the same order, centred at ``N//2``; columns = views; angle origin and direction
    identical because skimage's detector coordinate is ``x cos θ + y sin θ`` with y up).
    """

    def __init__(self, geometry: Geometry) -> None:
        if not isinstance(geometry, (ParallelBeam, FanBeam)):
            raise ValueError(f"geometry must be a ParallelBeam or FanBeam, received {type(geometry).__name__}")
        self.geometry = geometry
        n = geometry.image_size
        super().__init__((1, n, n), (1, geometry.views, geometry.detectors), idomain="real", batch=geometry.batch)
        if isinstance(geometry, ParallelBeam):
            self._taps = max(1, math.ceil(2.0 / geometry.detector_spacing - 1e-12))
        else:
            self._taps = _fan_taps(geometry)

    def __repr__(self) -> str:
        return f"<[{'x'.join(map(str, self.ishape))}]->[{'x'.join(map(str, self.oshape))}] Radon {self.geometry!r}>"

    # -- chunking -------------------------------------------------------------------------------
    def _chunks(self, per_view: int, batch: int):
        size = max(1, _CHUNK_ELEMENTS // max(1, per_view * batch))
        for start in range(0, self.geometry.views, size):
            yield slice(start, min(start + size, self.geometry.views))

    def _items(self, batch: int):
        """(item slice, item index for the angles): all at once for shared angles, else one by one."""
        if self.geometry.batch is None:
            return [(slice(None), None)]
        return [(slice(i, i + 1), i) for i in range(batch)]

    def _rays(self, angles: torch.Tensor, dtype, device):
        """Joseph coefficients of one chunk of views (computed in float64, cast to ``dtype``)."""
        g = self.geometry
        cos, sin = torch.cos(angles), torch.sin(angles)
        if isinstance(g, ParallelBeam):
            lines = _parallel_ray_lines(cos, sin, g.detector_positions())
        else:
            ray_cos, ray_sin = g.ray_angles()
            lines = _fan_ray_lines(cos, sin, ray_cos, ray_sin, g.source_distance)
        plane, a, b, w = _joseph_coefficients(*lines, g.image_size)
        return plane.to(device), a.to(device, dtype), b.to(device, dtype), w.to(device, dtype)

    # -- maps -------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and use_triton(x):  # CUDA: the Triton pair of physics.kernels.ct_project
            return importlib.import_module("physics.kernels.ct_project").radon_forward(x, self.geometry)
        if use_numba(x):  # CPU: the compiled pair of physics.kernels.ct_numba (same discretisation)
            return importlib.import_module("physics.kernels.ct_numba").radon_forward(x, self.geometry)
        g = self.geometry
        n = g.image_size
        out = x.new_empty(x.shape[0], 1, g.views, g.detectors)
        planes = _image_planes(x[:, 0])
        for sl, item in self._items(x.shape[0]):
            angles = g._item_angles(item)
            p = planes[sl]
            for ch in self._chunks(g.detectors * n, p.shape[0]):
                plane, a, b, w = self._rays(angles[ch], x.dtype, x.device)
                out[sl, 0, ch] = _joseph_forward(p, plane, a, b, w)
        return out

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if y.dtype == torch.float32 and use_triton(y):
            return importlib.import_module("physics.kernels.ct_project").radon_adjoint(y, self.geometry)
        if use_numba(y):
            return importlib.import_module("physics.kernels.ct_numba").radon_adjoint(y, self.geometry)
        g = self.geometry
        n = g.image_size
        out = y.new_zeros(y.shape[0], 1, n, n)
        for sl, item in self._items(y.shape[0]):
            angles = g._item_angles(item)
            for ch in self._chunks(n * n, y[sl].shape[0]):
                sino = y[sl, 0, ch]
                cos = torch.cos(angles[ch]).to(y.device, y.dtype)
                sin = torch.sin(angles[ch]).to(y.device, y.dtype)
                if isinstance(g, ParallelBeam):
                    det0 = -(g.detectors - 1) / 2 * g.detector_spacing
                    out[sl, 0] += _joseph_adjoint_parallel(sino, cos, sin, n, det0, g.detector_spacing, self._taps)
                else:
                    _, _, _, w = self._rays(angles[ch], y.dtype, y.device)
                    ray_cos, ray_sin = (t.to(y.device, y.dtype) for t in g.ray_angles())
                    out[sl, 0] += _joseph_adjoint_fan(sino, w, cos, sin, ray_cos, ray_sin, g, self._taps)
        return out

    # -- filtered back-projection ---------------------------------------------------------------
    def fbp(self, sinogram: torch.Tensor, filter: str = "ramp") -> torch.Tensor:
        """Filtered back-projection ``[B, 1, views, detectors]`` → ``[B, 1, N, N]`` (Kak & Slaney ch. 3).

        Parallel beam (eq. 3.59-3.61): each view is convolved with the discrete ramp ``h`` (zero-padded
        FFT, length ≥ 2D, in units of the detector spacing τ: ``Q = τ·(h * p)`` with ``h(0) = 1/(4τ²)``)
        times the window, then ``f(P) = Σ_v Δθ_v Q_v(x cos θ_v + y sin θ_v)`` with linear interpolation.

        Fan beam, equiangular (§3.4.1): ``R' = R·R_s·cos γ``, ``Q = α·(g * R')`` with
        ``g(γ) = ½ (γ/sin γ)² h(γ)`` and ``α`` the angular pitch, ``f(P) = Σ_v Δβ_v Q_v(γ_P)/L²``
        (``L = |P - S|``). Flat (§3.4.2): on the virtual detector through the rotation centre
        (``s = det·R_s/(R_s+R_d)``, pitch ``a``), ``R' = R·R_s/√(R_s² + s²)``, ``Q = a·(½h * R')`` and
        ``f(P) = Σ_v Δβ_v Q_v(s_P)/U²`` with ``U = ⟨P - S, e_r⟩/R_s``.

        Δθ_v / Δβ_v are half the gaps to the neighbouring views (angles modulo π for parallel, 2π for
        fan; see :func:`_angular_weights`), so any angle set works and a uniform full scan gives
        ``π/V`` (``2π/V``). Fan data covering less than 2π are short-scan: Parker weights times 2 (see
        :func:`_parker_weights`), exact for a scan of at least ``π + 2·max|γ|``. Limited-angle data
        give the usual limited-angle artefacts.

        ``filter``: ``"ramp"`` (Ram-Lak), ``"shepp-logan"`` (× sinc f), ``"cosine"`` (× cos πf) or
        ``"hann"`` (× ½(1 + cos 2πf)), with f in cycles per sample.
        """
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, received {filter!r}")
        self._check(sinogram, self.oshape, "real", "sinogram")
        g = self.geometry
        n, dtype, device = g.image_size, sinogram.dtype, sinogram.device
        out = sinogram.new_zeros(sinogram.shape[0], 1, n, n)
        for sl, item in self._items(sinogram.shape[0]):
            angles = g._item_angles(item)
            sino = sinogram[sl, 0]
            if isinstance(g, ParallelBeam):
                weights, _, _ = _angular_weights(angles, math.pi)
                response = _fourier_filter(g.detectors, filter, dtype, device)
                q = _apply_filter(sino, response) / g.detector_spacing
                det0 = -(g.detectors - 1) / 2 * g.detector_spacing
            else:
                weights, short, median = _angular_weights(angles, 2 * math.pi)
                rs, length = g.source_distance, g._length
                det = g.detector_positions()
                if g.detector == "equiangular":
                    gamma = det / length
                    pre = rs * torch.cos(gamma)
                    alpha = g.detector_spacing / length
                    response = _fourier_filter(g.detectors, filter, dtype, device, fan_alpha=alpha)
                    scale = 1.0 / alpha
                else:
                    gamma = torch.atan(det / length)
                    s = det * rs / length
                    pre = rs / torch.sqrt(rs**2 + s.square())
                    response = 0.5 * _fourier_filter(g.detectors, filter, dtype, device)
                    scale = 1.0 / (g.detector_spacing * rs / length)
                pre = pre[None, :].expand(angles.shape[0], -1)
                if short:
                    pre = pre * 2.0 * _parker_weights(angles, gamma, median)
                q = _apply_filter(sino * pre.to(device, dtype), response) * scale
            if use_numba(q):  # CPU: the same back-projection compiled (physics.kernels.ct_numba)
                out[sl, 0] = importlib.import_module("physics.kernels.ct_numba").lerp_backproject(q, g, angles, weights)
                continue
            for ch in self._chunks(n * n, sino.shape[0]):
                cos = torch.cos(angles[ch]).to(device, dtype)
                sin = torch.sin(angles[ch]).to(device, dtype)
                wv = weights[ch].to(device, dtype)[:, None, None]
                if isinstance(g, ParallelBeam):
                    u = _parallel_detector_index(cos, sin, n, det0, g.detector_spacing)
                    pix = wv.expand_as(u)
                else:
                    p_s, p_r = _fan_pixel_frame(cos, sin, n, g.source_distance)
                    det0 = -(g.detectors - 1) / 2 * g.detector_spacing
                    if g.detector == "equiangular":
                        u = (torch.atan2(p_s, p_r) * g._length - det0) / g.detector_spacing
                        pix = wv / (p_s.square() + p_r.square())
                    else:
                        u = (g._length * p_s / p_r - det0) / g.detector_spacing
                        pix = wv * (g.source_distance / p_r).square()
                out[sl, 0] += _lerp_backproject(q[:, ch], u, pix)
        return out
