"""Synthetic training data, generated in batches on the training device.

Every generator is a :class:`medrecon.data.Source`: ``sample(n, size, generator)`` returns
``[n, 1, size, size]`` drawn with the ``torch.Generator`` (which must live on the source's device)
using only batched tensor operations, so a GPU is never starved by a per-image Python loop (the
only loops run over a handful of tissue layers, shapes or generator kinds).

Generators
----------
:class:`BrainMRI`
    Slices of the MNI152 anatomy (:mod:`medrecon.data.anatomy`) resampled trilinearly with
    ``grid_sample`` on a randomly posed plane: axial 70 %, coronal 15 %, sagittal 15 %; in-plane
    rotation ±15°, tilt ±6°, field of view 190–250 mm, aspect 0.92–1.08, left/right flip,
    ±12 mm shift, and a smooth elastic displacement (5×5 control grid, ≤ 4 mm in-plane, ≤ 2 mm
    through-plane). Tissue intensities follow a randomly drawn T1-, T2-, PD- or FLAIR-like
    contrast for grey/white matter, CSF and the synthesised extra-cerebral layers (CSF gap, skull
    tables, diploë, scalp fat and soft tissue, built from the distance to the brain), plus a
    random multiple of the T1 template for fine anatomical detail and optional small lesions.
:class:`BodyMRI`
    Non-brain structure: torso/chest cross-sections (skin, subcutaneous fat, muscle wall,
    visceral organs or lungs and heart, vessels, a vertebra with paraspinal muscles),
    limb cross-sections (skin, fat, muscle with fascial septa, one or two bones with cortex and
    marrow) and random-ellipse phantoms; T1/T2/PD-like tissue values, optional fat suppression.
:class:`HeadCT`, :class:`BodyCT`
    The same geometry in Hounsfield units (air −1000, fat −120…−80, CSF/fluid 0…20, brain white
    matter 20…32, grey matter 32…45, blood 35…250 (unenhanced to contrast-enhanced), muscle 35…60,
    marrow 150…450, diploë 400…900, cortical bone 700…1900 (skull tables 1200…2000)), then mapped to [0, 1] by
    :data:`medrecon.data.CT_SCALING` (HU window [−1000, 2000]).
:class:`Mixture`
    Draws each image's component with the given weights and fills the batch component by
    component.

MRI post-processing (all generators): a small multiplicative texture (smooth noise on a
``size/4`` grid, ≤ 5 %), a bias field ``exp(a·f)`` with ``f`` a bicubic-smoothed 3×3 random field
and ``a ≤ 0.3``, a smooth phase (constant + linear ramp ≤ ±π + quadratic ≤ ±1.5 rad + a 4×4
smooth field ≤ 1 rad), giving ``complex64`` images, and the normalisation of
:data:`medrecon.data.MRI_SCALING` (magnitude 99.5th percentile = 1 per image).

Held-out split: :class:`BrainMRI`/:class:`HeadCT` draw the slice position (as a fraction of the
brain's extent along the slice normal) from disjoint bands, see :func:`slice_intervals`; the body
generators are procedural (continuous random parameters), so their held-out split is a different
seed only. Callers use different seeds for the two splits as well.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from medrecon import MedreconError
from medrecon.data import CT_SCALING, MRI_SCALING, Source, as_device, hu_to_unit, normalise_magnitude
from medrecon.data.anatomy import MAP_NAMES, PROXIMITY_MM, Anatomy, load_anatomy

__all__ = [
    "BrainMRI", "BodyMRI", "HeadCT", "BodyCT", "Mixture", "Crops", "Pooled", "make_source", "SOURCES",
    "slice_intervals", "SLICE_RANGE", "HELDOUT_BANDS", "SPLIT_GUARD",
]

Device = Union[str, torch.device]

# --------------------------------------------------------------------------------------------
# Held-out split of slice positions (fractions of the brain extent along the slice normal).
SLICE_RANGE = (0.12, 0.94)
HELDOUT_BANDS = ((0.27, 0.33), (0.52, 0.58), (0.77, 0.83))
SPLIT_GUARD = 0.03  # gap between a held-out band and the training range on each side (≈ 4–6 mm)


def slice_intervals(split: str) -> list[tuple[float, float]]:
    """Disjoint intervals of slice position (fraction of the brain extent along the normal) that
    ``split`` ("train" or "heldout") draws from. Train and held-out intervals are separated by
    at least ``SPLIT_GUARD`` (the slice *centre* position; a tilted slice plane reaches a few
    millimetres further at its edges)."""
    if split == "heldout":
        return [tuple(b) for b in HELDOUT_BANDS]
    if split != "train":
        raise MedreconError(f"split must be 'train' or 'heldout', received {split!r}")
    out, start = [], SLICE_RANGE[0]
    for lo, hi in HELDOUT_BANDS:
        out.append((start, lo - SPLIT_GUARD))
        start = hi + SPLIT_GUARD
    out.append((start, SLICE_RANGE[1]))
    return out


# --------------------------------------------------------------------------------------------
# Small batched helpers (all randomness from the given generator, on its device).

def _rand(shape: Sequence[int], g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """U(lo, hi) of ``shape`` on the generator's device (one kernel: launches dominate on a GPU)."""
    return torch.empty(tuple(shape), device=g.device).uniform_(lo, hi, generator=g)


def _uniform(lo: torch.Tensor, hi: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Elementwise U(lo, hi) for tensors ``lo``/``hi`` of one shape."""
    return lo + (hi - lo) * torch.rand(lo.shape, generator=g, device=g.device)


def _smooth_field(n: int, size: int, grid: int, g: torch.Generator) -> torch.Tensor:
    """``[n, 1, size, size]`` smooth random field: N(0, 1) on a ``grid × grid`` lattice, bicubic-upsampled."""
    grid = max(2, int(grid))
    coarse = torch.randn((n, 1, grid, grid), generator=g, device=g.device)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)


def _pixel_coords(size: int, device: torch.device) -> torch.Tensor:
    """Pixel-centre coordinates in [-1, 1] along one axis (``[size]``)."""
    return (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


def _choice(probs: Sequence[float], n: int, g: torch.Generator) -> torch.Tensor:
    p = torch.tensor(probs, dtype=torch.float32, device=g.device)
    return torch.multinomial(p, n, replacement=True, generator=g)


def _table(rows: Sequence[Sequence[tuple[float, float]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tensor(rows, dtype=torch.float32, device=device)  # [contrasts, tissues, 2]
    return t[..., 0], t[..., 1]


def _finish_mri(mag: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Texture, bias field and smooth phase on a magnitude batch ``[n, 1, H, W]``; returns the
    normalised ``complex64`` batch (module docstring, "MRI post-processing")."""
    n, _, size, _ = mag.shape
    texture = 1.0 + _rand((n, 1, 1, 1), g, 0.0, 0.05) * _smooth_field(n, size, size // 4, g)
    bias = torch.exp(_rand((n, 1, 1, 1), g, 0.05, 0.3) * _smooth_field(n, size, 3, g))
    mag = (mag * texture).clamp_min(0.0) * bias
    c = _pixel_coords(size, mag.device)
    u, v = c[None, None, None, :], c[None, None, :, None]
    a = _rand((6, n, 1, 1, 1), g, -1.0, 1.0)
    phase = (math.pi * a[0] + math.pi * (a[1] * u + a[2] * v) + 1.5 * (a[3] * u * u + a[4] * v * v)
             + 1.5 * a[5] * u * v + _rand((n, 1, 1, 1), g, 0.0, 1.0) * _smooth_field(n, size, 4, g))
    x = torch.polar(mag.float(), phase.float())
    return normalise_magnitude(x)[0].to(torch.complex64)


# --------------------------------------------------------------------------------------------
# Brain slices from the MNI152 anatomy.

# Base frames (rows: image-column direction u, image-row direction v, slice normal) in RAS axes.
_FRAMES = (
    ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),   # axial: anterior at the top
    ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),   # coronal: superior at the top
    ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),   # sagittal: superior at the top
)
_NORMAL_AXIS = (2, 1, 0)
_ORIENTATION_P = (0.7, 0.15, 0.15)

# Tissue layers of a head slice, in this order.
_HEAD_TISSUES = ("gm", "wm", "csf", "bone", "marrow", "fat", "soft")
# MRI contrasts: per tissue (lo, hi) relative intensity, then the T1-detail weight and lesion value.
_MRI_CONTRASTS = ("T1", "T2", "PD", "FLAIR")
_MRI_HEAD = (
    # gm           wm            csf           bone         marrow        fat           soft
    ((0.50, 0.65), (0.80, 0.95), (0.05, 0.20), (0.0, 0.05), (0.60, 0.90), (0.85, 1.00), (0.35, 0.55)),  # T1
    ((0.55, 0.70), (0.35, 0.50), (0.90, 1.00), (0.0, 0.05), (0.40, 0.70), (0.60, 0.90), (0.25, 0.45)),  # T2
    ((0.75, 0.90), (0.60, 0.75), (0.85, 1.00), (0.0, 0.05), (0.50, 0.80), (0.70, 0.90), (0.45, 0.65)),  # PD
    ((0.65, 0.80), (0.40, 0.55), (0.02, 0.10), (0.0, 0.05), (0.40, 0.70), (0.60, 0.90), (0.30, 0.50)),  # FLAIR
)
_MRI_T1_DETAIL = ((0.0, 0.35), (-0.25, 0.0), (-0.1, 0.1), (-0.15, 0.05))
_MRI_LESION = ((0.20, 0.45), (0.80, 1.00), (0.85, 1.00), (0.80, 1.00))
_CT_HEAD = ((32.0, 45.0), (20.0, 32.0), (0.0, 12.0), (1200.0, 2000.0), (400.0, 900.0), (-120.0, -80.0), (25.0, 60.0))
_CT_LESION = ((8.0, 20.0), (55.0, 90.0))  # infarct/oedema, haemorrhage
_LESION_P = 0.3
_AIR_BELOW = 1e-3  # CT pixels whose tissue occupancy is below this are exactly air (-1000 HU)


class _BrainSlicer:
    """Random oblique slices of the anatomy on a device (module docstring, :class:`BrainMRI`)."""

    def __init__(self, anatomy: Anatomy, device: torch.device, split: str) -> None:
        if not isinstance(anatomy, Anatomy):
            raise MedreconError(f"expected a medrecon.data.anatomy.Anatomy, received {type(anatomy).__name__}")
        self.intervals = slice_intervals(split)
        self.split = split
        self.anatomy_info = {"source": anatomy.source, "voxel_mm": anatomy.voxel_mm, "shape": list(anatomy.shape)}
        self.volume = torch.from_numpy(anatomy.stack()).to(device)[None]       # [1, C, X, Y, Z]
        shape = torch.tensor(anatomy.shape, dtype=torch.float32, device=device)
        self.half_extent_mm = (shape - 1) / 2 * anatomy.voxel_mm                 # [3]
        self.brain_extent = torch.tensor(anatomy.brain_extent_mm(), dtype=torch.float32, device=device)  # [3, 2]
        self.frames = torch.tensor(_FRAMES, dtype=torch.float32, device=device)  # [3, 3, 3]
        self.normal_axis = torch.tensor(_NORMAL_AXIS, device=device)

    def slice_fractions(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``[n]`` slice positions, uniform over the union of this split's intervals."""
        iv = torch.tensor(self.intervals, dtype=torch.float32, device=g.device)
        length = iv[:, 1] - iv[:, 0]
        cum = torch.cumsum(length, 0)
        u = _rand((n,), g) * cum[-1]
        idx = torch.searchsorted(cum, u, right=True).clamp_max(len(self.intervals) - 1)
        return iv[idx, 0] + u - (cum[idx] - length[idx])

    def sample_maps(self, n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Resampled maps ``[n, len(MAP_NAMES), size, size]`` and the pixel size in mm ``[n]``."""
        dev = g.device
        orient = _choice(_ORIENTATION_P, n, g)
        frame = self.frames[orient]                                             # [n, 3 (u, v, normal), 3 (xyz)]
        # Slice centre: brain centre, moved to the drawn fraction along the normal, shifted in-plane.
        axis = self.normal_axis[orient]
        lo, hi = self.brain_extent[axis, 0], self.brain_extent[axis, 1]
        centre = self.brain_extent.mean(dim=1).expand(n, 3).clone()
        centre[torch.arange(n, device=dev), axis] = lo + self.slice_fractions(n, g) * (hi - lo)
        shift = _rand((n, 2), g, -12.0, 12.0)
        centre = centre + shift[:, :1] * frame[:, 0] + shift[:, 1:] * frame[:, 1]
        # Rotate the frame: in-plane ±15°, tilt ±6° about each in-plane axis.
        ang = torch.stack([_rand((n,), g, -15.0, 15.0), _rand((n,), g, -6.0, 6.0), _rand((n,), g, -6.0, 6.0)], 1)
        frame = _rotation(ang * (math.pi / 180.0)) @ frame
        # Field of view, aspect, flip; elastic displacement in mm.
        fov = _rand((n,), g, 190.0, 250.0)
        flip = torch.where(_rand((n,), g) < 0.5, -1.0, 1.0)
        fov_u, fov_v = fov * flip, fov * _rand((n,), g, 0.92, 1.08)
        c = _pixel_coords(size, dev)
        amp = torch.stack([_rand((n,), g, 0.0, 4.0), _rand((n,), g, 0.0, 4.0), _rand((n,), g, 0.0, 2.0)], 1)
        disp = torch.cat([_smooth_field(n, size, 5, g) for _ in range(3)], 1) * amp[:, :, None, None]  # [n, 3, S, S]
        pu = c[None, None, :] * (fov_u / 2)[:, None, None] + disp[:, 0]
        pv = c[None, :, None] * (fov_v / 2)[:, None, None] + disp[:, 1]
        pn = disp[:, 2]
        points = (centre[:, None, None, :] + pu[..., None] * frame[:, None, None, 0]
                  + pv[..., None] * frame[:, None, None, 1] + pn[..., None] * frame[:, None, None, 2])
        grid = (points / self.half_extent_mm).flip(-1)                          # (z, y, x) → (W, H, D)
        maps = F.grid_sample(self.volume, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)
        return maps[0].transpose(0, 1), fov / size

    def head_layers(self, n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tissue fractions ``[n, 7, S, S]`` in :data:`_HEAD_TISSUES` order, the T1 map ``[n, 1, S, S]``
        and a lesion mask ``[n, 1, S, S]`` (zero for images without lesions)."""
        maps, pixel_mm = self.sample_maps(n, size, g)
        t1, gm, wm, csf, prox = (maps[:, i:i + 1] for i in range(len(MAP_NAMES)))
        brain = (gm + wm + csf).clamp(0.0, 1.0)
        outside = 1.0 - brain
        dist = PROXIMITY_MM - prox                                              # mm to the brain
        edge = (0.35 * pixel_mm)[:, None, None, None]
        # Radii (mm from the brain) of the extra-cerebral layers; thicknesses vary smoothly.
        gap = _rand((n, 1, 1, 1), g, 0.5, 2.5)
        skull = (_rand((n, 1, 1, 1), g, 4.0, 8.0) + _smooth_field(n, size, 3, g)).clamp_min(2.0)
        scalp = (_rand((n, 1, 1, 1), g, 4.0, 9.0) + _smooth_field(n, size, 3, g)).clamp_min(2.0)
        radii = [gap, gap + 0.35 * skull, gap + 0.65 * skull, gap + skull,
                 gap + skull + 0.25 * scalp, gap + skull + 0.75 * scalp, gap + skull + scalp]
        within = [torch.sigmoid((r - dist) / edge) * outside for r in radii]
        shells = [within[0]] + [within[i] - within[i - 1] for i in range(1, len(within))]
        csf_gap, table_in, diploe, table_out, galea, fat, skin = shells
        layers = torch.cat([gm, wm, csf + csf_gap, table_in + table_out, diploe, fat, galea + skin], 1)
        # Optional small lesions inside the brain parenchyma (≤ 3 blobs, 2–10 mm).
        has = (_rand((n, 3), g) < 0.5) & (_rand((n, 1), g) < _LESION_P)
        c = _pixel_coords(size, g.device)
        X, Y = c[None, None, None, :], c[None, None, :, None]
        sem = _rand((2, n, 3), g, 0.02, 0.09)
        blobs = _shape_mask(X, Y, _rand((n, 3), g, -0.5, 0.5), _rand((n, 3), g, -0.5, 0.5), sem[0], sem[1],
                            _rand((n, 3), g, 0.0, math.pi), _harmonics(g, (n, 3), 0.15), 1.0, 2.0 / size)
        lesion = ((blobs * has[..., None, None]).amax(1, keepdim=True) * (gm + wm)).clamp(0.0, 1.0)
        return layers, t1, lesion

    def recipe(self) -> dict[str, Any]:
        return {
            "anatomy": self.anatomy_info, "split": self.split, "slice_intervals": self.intervals,
            "slice_interval_unit": "fraction of the brain extent along the slice normal",
            "orientations": dict(zip(("axial", "coronal", "sagittal"), _ORIENTATION_P)),
            "in_plane_rotation_deg": 15, "tilt_deg": 6, "fov_mm": [190, 250], "aspect": [0.92, 1.08],
            "shift_mm": 12, "elastic_mm": {"in_plane": 4, "through_plane": 2, "grid": 5},
            "lesion_probability": _LESION_P,
        }


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """``[n, 3, 3]`` rotation acting on frame rows (u, v, normal): in-plane angle, then tilts."""
    a, b, c = angles.unbind(1)
    one, zero = torch.ones_like(a), torch.zeros_like(a)

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rn = mat([[a.cos(), -a.sin(), zero], [a.sin(), a.cos(), zero], [zero, zero, one]])
    ru = mat([[one, zero, zero], [zero, b.cos(), -b.sin()], [zero, b.sin(), b.cos()]])
    rv = mat([[c.cos(), zero, -c.sin()], [zero, one, zero], [c.sin(), zero, c.cos()]])
    return rn @ ru @ rv


class BrainMRI(Source):
    """Complex brain MRI slices from the MNI152 anatomy (module docstring): ``complex64 [n, 1, S, S]``,
    magnitude 99.5th percentile = 1 per image (:data:`medrecon.data.MRI_SCALING`)."""

    complex = True

    def __init__(self, anatomy: Anatomy, device: Device, split: str = "train") -> None:
        self.device = as_device(device)
        self.slicer = _BrainSlicer(anatomy, self.device, split)
        self.lo, self.hi = _table(_MRI_HEAD, self.device)
        self.detail_lo, self.detail_hi = _table([_MRI_T1_DETAIL], self.device)
        self.lesion_lo, self.lesion_hi = _table([_MRI_LESION], self.device)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "BrainMRI", **self.slicer.recipe(), "contrasts": list(_MRI_CONTRASTS),
                "tissues": list(_HEAD_TISSUES), "post": "texture<=5%, bias exp(<=0.3 f), smooth phase",
                "scaling": MRI_SCALING}

    def draw_slice_fractions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n]`` slice positions as :meth:`sample` draws them (exposed to check the split)."""
        return self.slicer.slice_fractions(n, generator)

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        g = generator
        layers, t1, lesion = self.slicer.head_layers(n, size, g)
        contrast = _choice([0.25] * 4, n, g)
        values = _uniform(self.lo[contrast], self.hi[contrast], g)              # [n, 7]
        detail = _uniform(self.detail_lo[0, contrast], self.detail_hi[0, contrast], g)
        mag = (layers * values[:, :, None, None]).sum(1, keepdim=True) + detail[:, None, None, None] * t1
        lesion_value = _uniform(self.lesion_lo[0, contrast], self.lesion_hi[0, contrast], g)
        mag = mag + lesion * (lesion_value[:, None, None, None] - mag)
        return _finish_mri(mag.clamp_min(0.0), g)


class HeadCT(Source):
    """Head CT slices in HU from the MNI152 anatomy, mapped by :data:`medrecon.data.CT_SCALING`:
    ``float32 [n, 1, S, S]`` in [0, 1] (module docstring for the HU ranges)."""

    complex = False

    def __init__(self, anatomy: Anatomy, device: Device, split: str = "train") -> None:
        self.device = as_device(device)
        self.slicer = _BrainSlicer(anatomy, self.device, split)
        self.lo, self.hi = _table([_CT_HEAD], self.device)
        self.lesion_lo, self.lesion_hi = _table([_CT_LESION], self.device)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "HeadCT", **self.slicer.recipe(), "tissues_hu": dict(zip(_HEAD_TISSUES, _CT_HEAD)),
                "lesions_hu": {"infarct": _CT_LESION[0], "haemorrhage": _CT_LESION[1]},
                "texture_hu": 4.0, "scaling": CT_SCALING}

    def draw_slice_fractions(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n]`` slice positions as :meth:`sample` draws them (exposed to check the split)."""
        return self.slicer.slice_fractions(n, generator)

    def hu(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """The batch in Hounsfield units, ``float32 [n, 1, S, S]`` (unclipped; air = −1000)."""
        g = generator
        layers, _, lesion = self.slicer.head_layers(n, size, g)
        values = _uniform(self.lo[0].expand(n, -1), self.hi[0].expand(n, -1), g)
        occupied = layers.sum(1, keepdim=True).clamp(0.0, 1.0)
        hu = (layers * values[:, :, None, None]).sum(1, keepdim=True) - 1000.0 * (1.0 - occupied)
        kind = (_rand((n,), g) < 0.5).long()
        lesion_value = _uniform(self.lesion_lo[0, kind], self.lesion_hi[0, kind], g)
        hu = hu + lesion * (lesion_value[:, None, None, None] - hu)
        hu = hu + _rand((n, 1, 1, 1), g, 0.0, 4.0) * _smooth_field(n, size, size // 4, g) * occupied
        return torch.where(occupied < _AIR_BELOW, torch.full_like(hu, -1000.0), hu)

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        return hu_to_unit(self.hu(n, size, generator)).float()


# --------------------------------------------------------------------------------------------
# Body-like structure: layers of smooth random shapes, each painted with a tissue.

_BODY_TISSUES = ("air", "fat", "muscle", "organ", "fluid", "bone", "marrow", "lung", "skin", "blood")
AIR, FAT, MUSCLE, ORGAN, FLUID, BONE, MARROW, LUNG, SKIN, BLOOD = range(len(_BODY_TISSUES))
_VARIED = (ORGAN, FLUID, BLOOD)  # each shape of these tissues gets its own value around the tissue's
_MRI_BODY_CONTRASTS = ("T1", "T2", "PD")
_MRI_BODY = (
    # air      fat           muscle        organ         fluid         bone         marrow        lung         skin          blood
    ((0, 0), (0.85, 1.0), (0.30, 0.45), (0.35, 0.70), (0.03, 0.15), (0, 0.05), (0.60, 0.90), (0, 0.06), (0.40, 0.60), (0.05, 0.60)),
    ((0, 0), (0.60, 0.90), (0.15, 0.30), (0.25, 0.70), (0.85, 1.00), (0, 0.05), (0.45, 0.75), (0, 0.06), (0.30, 0.50), (0.05, 0.60)),
    ((0, 0), (0.75, 0.95), (0.40, 0.55), (0.45, 0.80), (0.65, 0.90), (0, 0.05), (0.60, 0.85), (0, 0.06), (0.50, 0.70), (0.10, 0.60)),
)
_FAT_SUPPRESSION_P = 0.25
_CT_BODY = ((-1000, -1000), (-120, -80), (35, 60), (25, 80), (0, 20), (700, 1900), (150, 450), (-900, -750),
            (20, 50), (35, 250))
_BODY_KINDS = ("torso", "limb", "ellipses")
_BODY_KIND_P = (0.5, 0.25, 0.25)
_ORGAN_TISSUES = (ORGAN, FLUID, FAT, AIR)
_ORGAN_TISSUE_P = (0.6, 0.2, 0.1, 0.1)
_PHANTOM_TISSUES = (FAT, MUSCLE, ORGAN, FLUID, BONE, MARROW, LUNG, BLOOD)
_PHANTOM_TISSUE_P = (0.15, 0.2, 0.25, 0.15, 0.05, 0.05, 0.05, 0.1)

Layer = tuple[torch.Tensor, torch.Tensor]  # (mask [m, S, S] in [0, 1], tissue index [m] long)


def _harmonics(g: torch.Generator, shape: tuple[int, ...], amp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine coefficients ``[..., 3]`` of radial harmonics k = 2..4 (amplitude ≤ amp/k,
    uniform phase): the radius is ``1 + Σ_k (A_k cos kθ + B_k sin kθ)``."""
    k = torch.arange(2, 5, device=g.device, dtype=torch.float32)
    amp_k = _rand((*shape, 3), g, 0.0, amp) / k
    phase = _rand((*shape, 3), g, 0.0, 2 * math.pi)
    return amp_k * phase.cos(), amp_k * phase.sin()


class _Star:
    """A star-shaped outline: the ellipse (centre, semi-axes a, b, angle rot) whose radius is
    modulated by the harmonics of :func:`_harmonics`. Parameters ``[...]`` broadcast against the
    grid ``X, Y`` to ``[..., S, S]``; :meth:`mask` gives soft masks of the outline scaled by any
    factor (scalar, ``[...]`` tensor or ``[..., S, S]`` field) with an edge about one pixel wide."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, a: torch.Tensor,
                 b: torch.Tensor, rot: torch.Tensor, harm: Optional[tuple[torch.Tensor, torch.Tensor]], edge: float) -> None:
        p = lambda t: t[..., None, None]  # noqa: E731
        self.ndim = cx.ndim
        dx, dy = X - p(cx), Y - p(cy)
        cr, sr = p(rot.cos()), p(rot.sin())
        u, v = (dx * cr + dy * sr) / p(a), (-dx * sr + dy * cr) / p(b)
        self.rho = torch.sqrt(u * u + v * v + 1e-12)
        self.sharp = p(torch.minimum(a, b)) / edge
        self.r: Union[float, torch.Tensor] = 1.0
        if harm is not None:
            # cos kθ, sin kθ by the angle-addition recursion from cos θ = u/ρ, sin θ = v/ρ.
            c1, s1 = u / self.rho, v / self.rho
            ck, sk = c1, s1
            r = torch.ones_like(self.rho)
            for j in range(harm[0].shape[-1] + 1):
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
                if j < harm[0].shape[-1]:
                    r = r + p(harm[0][..., j]) * ck + p(harm[1][..., j]) * sk
            self.r = r

    def mask(self, scale: Union[float, torch.Tensor] = 1.0, index: Optional[int] = None) -> torch.Tensor:
        """Soft mask of the outline scaled by ``scale``; ``index`` picks one shape along the last
        parameter axis (then ``scale`` broadcasts against that shape's ``[m, S, S]``)."""
        rho, r, sharp = self.rho, self.r, self.sharp
        if index is not None:
            rho, sharp = rho[..., index, :, :], sharp[..., index, :, :]
            r = r[..., index, :, :] if isinstance(r, torch.Tensor) else r
        if isinstance(scale, torch.Tensor) and scale.ndim == rho.ndim - 2:
            scale = scale[..., None, None]
        return torch.sigmoid((scale * r - rho) * sharp)


def _shape_mask(X: torch.Tensor, Y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, a: torch.Tensor,
                b: torch.Tensor, rot: torch.Tensor, harm: Optional[tuple[torch.Tensor, torch.Tensor]],
                scale: Union[float, torch.Tensor], edge: float) -> torch.Tensor:
    """Soft mask ``[..., S, S]`` of one :class:`_Star` outline scaled by ``scale``."""
    return _Star(X, Y, cx, cy, a, b, rot, harm, edge).mask(scale)


def _torso(m: int, size: int, g: torch.Generator) -> list[Layer]:
    """Torso/chest cross-section: skin, fat, muscle wall, viscera or lungs + heart, vessels, spine."""
    dev = g.device
    c = _pixel_coords(size, dev)
    X, Y = c[None, None, :], c[None, :, None]
    edge = 2.0 / size
    const = lambda t: torch.full((m,), t, dtype=torch.long, device=dev)  # noqa: E731
    a = _rand((m,), g, 0.7, 0.95)
    b = a * _rand((m,), g, 0.6, 0.85)
    cx, cy, rot = _rand((m,), g, -0.05, 0.05), _rand((m,), g, -0.05, 0.05), _rand((m,), g, -0.15, 0.15)
    harm = _harmonics(g, (m,), 0.15)
    cr, sr = rot.cos(), rot.sin()

    def at(bx: torch.Tensor, by: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Body-frame offsets (fractions of a, b; +y = posterior = down) → image coordinates."""
        e = (lambda t: t) if bx.ndim == 1 else (lambda t: t[:, None])  # noqa: E731
        ox, oy = bx * e(a), by * e(b)
        return e(cx) + ox * e(cr) - oy * e(sr), e(cy) + ox * e(sr) + oy * e(cr)

    theta = torch.atan2(Y - cy[:, None, None], X - cx[:, None, None])
    skin_t = 0.015
    fat_t = _rand((m, 1, 1), g, 0.03, 0.15) * (1 + 0.4 * torch.cos(theta + _rand((m, 1, 1), g, 0, 2 * math.pi)))
    wall_t = _rand((m, 1, 1), g, 0.04, 0.12)
    s_muscle = 1 - skin_t - fat_t
    s_visc = s_muscle - wall_t
    body = _Star(X, Y, cx, cy, a, b, rot, harm, edge)
    interior = body.mask(s_visc)
    layers: list[Layer] = [(body.mask(1.0), const(SKIN)), (body.mask(1 - skin_t), const(FAT)),
                           (body.mask(s_muscle), const(MUSCLE)),
                           (interior, torch.where(_rand((m,), g) < 0.3, const(FAT), const(ORGAN)))]
    chest = (_rand((m,), g) < 0.35).float()[:, None, None]
    # Abdomen: up to six organ blobs inside the visceral cavity.
    k = 6
    ox, oy = at(_rand((m, k), g, -0.5, 0.5), _rand((m, k), g, -0.5, 0.4))
    sem = _rand((2, m, k), g, 0.1, 0.35) * a[None, :, None]
    organs = _shape_mask(X, Y, ox, oy, sem[0], sem[1] * 0.8, _rand((m, k), g, 0, math.pi),
                         _harmonics(g, (m, k), 0.3), 1.0, edge) * (interior * (1 - chest))[:, None]
    tissue = torch.tensor(_ORGAN_TISSUES, device=dev)[
        torch.multinomial(torch.tensor(_ORGAN_TISSUE_P, device=dev), m * k, replacement=True, generator=g)].view(m, k)
    present = _rand((m, k), g) < 0.85
    layers += [(organs[:, j] * present[:, j, None, None], tissue[:, j]) for j in range(k)]
    # Chest: two lungs (left, right) and a heart (anterior), one batched outline call.
    depth = s_visc.mean((1, 2))
    lx, ly = at(torch.stack([-_rand((m,), g, 0.35, 0.5) * depth, _rand((m,), g, 0.35, 0.5) * depth,
                             _rand((m,), g, -0.05, 0.2)], 1),
                torch.stack([_rand((m,), g, -0.15, 0.05), _rand((m,), g, -0.15, 0.05), _rand((m,), g, -0.35, -0.1)], 1))
    la = a[:, None] * torch.cat([_rand((m, 2), g, 0.2, 0.3), _rand((m, 1), g, 0.2, 0.3)], 1)
    lb = la * torch.cat([_rand((m, 2), g, 1.2, 1.8) * (b / a)[:, None], _rand((m, 1), g, 0.8, 1.1)], 1)
    chest_rot = torch.cat([rot[:, None].expand(m, 2), _rand((m, 1), g, 0, math.pi)], 1)
    thorax = _shape_mask(X, Y, lx, ly, la, lb, chest_rot, _harmonics(g, (m, 3), 0.2), 1.0, edge) * (interior * chest)[:, None]
    layers += [(thorax[:, 0], const(LUNG)), (thorax[:, 1], const(LUNG)), (thorax[:, 2], const(ORGAN))]
    # Spine at the posterior midline: paraspinal muscles (2), spinous process, vertebral body
    # (cortex, then marrow) and two large vessels in front of it, one batched outline call.
    vr = a * _rand((m,), g, 0.07, 0.11)
    vx, vy = at(_rand((m,), g, -0.03, 0.03), depth - _rand((m,), g, 0.05, 0.15))
    px = torch.stack([vx - 1.6 * vr * cr, vx + 1.6 * vr * cr, vx - 0.3 * vr * sr, vx,
                      vx - 0.9 * vr * cr, vx + 0.9 * vr * cr], 1)
    py = torch.stack([vy - 1.6 * vr * sr + 0.8 * vr, vy + 1.6 * vr * sr + 0.8 * vr, vy + 1.3 * vr * cr, vy,
                      vy - 1.6 * vr, vy - 1.6 * vr], 1)
    pa = vr[:, None] * torch.cat([torch.full((m, 2), 1.3, device=dev), torch.full((m, 1), 0.45, device=dev),
                                  torch.ones((m, 1), device=dev), 0.5 * _rand((m, 2), g, 0.7, 1.2)], 1)
    pb = pa * torch.cat([torch.full((m, 2), 1.0 / 1.3, device=dev), torch.ones((m, 4), device=dev)], 1)
    spine = _Star(X, Y, px, py, pa, pb, rot[:, None].expand(m, 6), _harmonics(g, (m, 6), 0.08), edge)
    parts = spine.mask(1.0)
    layers += [(parts[:, 0], const(MUSCLE)), (parts[:, 1], const(MUSCLE)), (parts[:, 2], const(BONE)),
               (parts[:, 3], const(BONE)), (spine.mask(_rand((m,), g, 0.7, 0.85), index=3), const(MARROW)),
               (parts[:, 4], const(BLOOD)), (parts[:, 5], const(BLOOD))]
    return layers


def _limb(m: int, size: int, g: torch.Generator) -> list[Layer]:
    """Limb cross-section: skin, fat, muscle with fascial septa, one or two bones (cortex + marrow), vessels."""
    dev = g.device
    c = _pixel_coords(size, dev)
    X, Y = c[None, None, :], c[None, :, None]
    edge = 2.0 / size
    const = lambda t: torch.full((m,), t, dtype=torch.long, device=dev)  # noqa: E731
    a = _rand((m,), g, 0.45, 0.85)
    b = a * _rand((m,), g, 0.75, 1.0)
    cx, cy, rot = _rand((m,), g, -0.08, 0.08), _rand((m,), g, -0.08, 0.08), _rand((m,), g, -math.pi, math.pi)
    harm = _harmonics(g, (m,), 0.15)
    theta = torch.atan2(Y - cy[:, None, None], X - cx[:, None, None])
    fat_t = _rand((m, 1, 1), g, 0.05, 0.25) * (1 + 0.4 * torch.cos(theta + _rand((m, 1, 1), g, 0, 2 * math.pi)))
    body = _Star(X, Y, cx, cy, a, b, rot, harm, edge)
    muscle = body.mask(1 - 0.02 - fat_t)
    layers: list[Layer] = [(body.mask(1.0), const(SKIN)), (body.mask(0.98), const(FAT)), (muscle, const(MUSCLE))]
    # Fascial septa: thin fat lines through the limb at random angles, inside the muscle.
    ang = _rand((m, 3, 1, 1), g, 0, math.pi)
    off = _rand((m, 3, 1, 1), g, -0.3, 0.3) * a[:, None, None, None]
    d = (X - cx[:, None, None])[:, None] * ang.sin() - (Y - cy[:, None, None])[:, None] * ang.cos() - off
    width = _rand((m, 3, 1, 1), g, 0.004, 0.012)
    septa = torch.sigmoid((width - d.abs()) / edge).amax(1) * muscle * (_rand((m, 1, 1), g) < 0.8)
    layers.append((septa, const(FAT)))
    # One or two bones (cortex, then marrow) and a vessel pair next to the main bone: one outline call.
    r = a[:, None] * _rand((m, 2), g, 0.12, 0.25) * torch.tensor([1.0, 0.6], device=dev)
    bx = cx[:, None] + _rand((m, 2), g, -0.25, 0.25) * a[:, None]
    by = cy[:, None] + _rand((m, 2), g, -0.25, 0.25) * b[:, None]
    vr = r[:, :1] * _rand((m, 2), g, 0.15, 0.3)
    sx = torch.cat([bx, bx[:, :1] - 1.6 * r[:, :1], bx[:, :1] + 1.6 * r[:, :1]], 1)
    sy = torch.cat([by, by[:, :1] + 1.4 * r[:, :1], by[:, :1] + 1.4 * r[:, :1]], 1)
    sa = torch.cat([r, vr], 1)
    sb = sa * torch.cat([_rand((m, 2), g, 0.8, 1.0), torch.ones((m, 2), device=dev)], 1)
    parts = _Star(X, Y, sx, sy, sa, sb, rot[:, None].expand(m, 4), _harmonics(g, (m, 4), 0.1), edge)
    cortex = parts.mask(1.0)
    second = (_rand((m,), g) < 0.4).float()[:, None, None]
    layers += [(cortex[:, 0], const(BONE)), (parts.mask(_rand((m,), g, 0.45, 0.7), index=0), const(MARROW)),
               (cortex[:, 1] * second, const(BONE)),
               (parts.mask(_rand((m,), g, 0.45, 0.7), index=1) * second, const(MARROW)),
               (cortex[:, 2] * muscle, const(BLOOD)), (cortex[:, 3] * muscle, const(BLOOD))]
    return layers


def _ellipses(m: int, size: int, g: torch.Generator) -> list[Layer]:
    """Random-ellipse phantom: an outer ellipse (optionally with a bone rim) holding up to 10 ellipses."""
    dev = g.device
    c = _pixel_coords(size, dev)
    X, Y = c[None, None, :], c[None, :, None]
    edge = 2.0 / size
    a, b = _rand((m,), g, 0.5, 0.9), _rand((m,), g, 0.5, 0.9)
    cx, cy, rot = _rand((m,), g, -0.05, 0.05), _rand((m,), g, -0.05, 0.05), _rand((m,), g, 0, math.pi)
    soft = torch.tensor((MUSCLE, ORGAN, FAT), device=dev)[torch.randint(0, 3, (m,), generator=g, device=dev)]
    rim = _rand((m,), g) < 0.3
    shell = _Star(X, Y, cx, cy, a, b, rot, None, edge)
    outer, inner = shell.mask(1.0), shell.mask(_rand((m,), g, 0.88, 0.95))
    layers: list[Layer] = [(outer, torch.where(rim, torch.full_like(soft, BONE), soft)), (inner, soft)]
    k = 10
    ox = cx[:, None] + _rand((m, k), g, -0.6, 0.6) * a[:, None]
    oy = cy[:, None] + _rand((m, k), g, -0.6, 0.6) * b[:, None]
    s = torch.minimum(a, b)[:, None]
    blobs = _shape_mask(X, Y, ox, oy, _rand((m, k), g, 0.03, 0.35) * s, _rand((m, k), g, 0.03, 0.35) * s,
                        _rand((m, k), g, 0, math.pi), None, 1.0, edge) * inner[:, None]
    tissue = torch.tensor(_PHANTOM_TISSUES, device=dev)[torch.multinomial(
        torch.tensor(_PHANTOM_TISSUE_P, device=dev), m * k, replacement=True, generator=g)].view(m, k)
    present = _rand((m, k), g) < 0.8
    layers += [(blobs[:, j] * present[:, j, None, None], tissue[:, j]) for j in range(k)]
    return layers


_BODY_BUILDERS: dict[str, Callable[[int, int, torch.Generator], list[Layer]]] = {
    "torso": _torso, "limb": _limb, "ellipses": _ellipses}


def _paint(layers: list[Layer], values: torch.Tensor, jitter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite layers in order (``img ← img + mask·(value − img)``) from per-image tissue values
    ``[m, T]``; shapes of :data:`_VARIED` tissues get ``jitter[:, layer]`` (``[m, L]``) added to
    their value. Returns the image ``[m, 1, S, S]`` (background = the air value) and the occupancy
    ``[m, 1, S, S]`` (the first layer, which encloses the others)."""
    tissue = torch.stack([t for _, t in layers], 1)                            # [m, L]
    layer_values = values.gather(1, tissue) + torch.isin(tissue, torch.tensor(_VARIED, device=values.device)) * jitter
    img = values[:, AIR, None, None].expand_as(layers[0][0])
    for j, (mask, _) in enumerate(layers):
        img = torch.lerp(img, layer_values[:, j, None, None].expand_as(mask), mask)
    return img[:, None], layers[0][0][:, None]


class _Body(Source):
    """Shared sampling of the body kinds; subclasses set tissue values and post-processing."""

    kind_probs = _BODY_KIND_P

    def __init__(self, device: Device, split: str = "train") -> None:
        self.device = as_device(device)
        slice_intervals(split)  # validates the name
        self.split = split

    def _values(self, m: int, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _jitter(self, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _layers_image(self, n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        kind = _choice(self.kind_probs, n, g)
        img = torch.empty((n, 1, size, size), device=g.device)
        occ = torch.empty((n, 1, size, size), device=g.device)
        for k, name in enumerate(_BODY_KINDS):
            idx = torch.nonzero(kind == k).flatten()
            if idx.numel() == 0:
                continue
            m = idx.numel()
            layers = _BODY_BUILDERS[name](m, size, g)
            img[idx], occ[idx] = _paint(layers, self._values(m, g), self._jitter((m, len(layers)), g))
        return img, occ

    def _body_recipe(self) -> dict[str, Any]:
        return {"split": self.split, "split_rule": "held-out = different seed (procedural generator)",
                "kinds": dict(zip(_BODY_KINDS, self.kind_probs)), "tissues": list(_BODY_TISSUES)}


class BodyMRI(_Body):
    """Complex non-brain MRI (torso, limb, ellipse phantoms; module docstring): ``complex64
    [n, 1, S, S]``, magnitude 99.5th percentile = 1 per image (:data:`medrecon.data.MRI_SCALING`)."""

    complex = True

    def __init__(self, device: Device, split: str = "train") -> None:
        super().__init__(device, split)
        self.lo, self.hi = _table(_MRI_BODY, self.device)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "BodyMRI", **self._body_recipe(), "contrasts": list(_MRI_BODY_CONTRASTS),
                "fat_suppression_probability": _FAT_SUPPRESSION_P, "scaling": MRI_SCALING}

    def _values(self, m: int, g: torch.Generator) -> torch.Tensor:
        contrast = torch.randint(0, len(_MRI_BODY_CONTRASTS), (m,), generator=g, device=g.device)
        values = _uniform(self.lo[contrast], self.hi[contrast], g)
        suppress = torch.where(_rand((m,), g) < _FAT_SUPPRESSION_P, _rand((m,), g, 0.05, 0.2), torch.ones(m, device=g.device))
        values[:, FAT] *= suppress
        values[:, MARROW] *= suppress
        return values

    def _jitter(self, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        return _rand(shape, g, -0.12, 0.12)

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        img, _ = self._layers_image(n, size, generator)
        return _finish_mri(img.clamp_min(0.0), generator)


class BodyCT(_Body):
    """Non-brain CT in HU (torso/chest, limb, ellipse phantoms) mapped by
    :data:`medrecon.data.CT_SCALING`: ``float32 [n, 1, S, S]`` in [0, 1]."""

    complex = False

    def __init__(self, device: Device, split: str = "train") -> None:
        super().__init__(device, split)
        self.lo, self.hi = _table([_CT_BODY], self.device)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "BodyCT", **self._body_recipe(),
                "tissues_hu": {t: list(r) for t, r in zip(_BODY_TISSUES, _CT_BODY)},
                "texture_hu": 8.0, "scaling": CT_SCALING}

    def _values(self, m: int, g: torch.Generator) -> torch.Tensor:
        return _uniform(self.lo[0].expand(m, -1), self.hi[0].expand(m, -1), g)

    def _jitter(self, shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        return _rand(shape, g, -12.0, 12.0)

    def hu(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """The batch in Hounsfield units, ``float32 [n, 1, S, S]`` (air = −1000)."""
        img, occ = self._layers_image(n, size, generator)
        hu = img + _rand((n, 1, 1, 1), generator, 0.0, 8.0) * _smooth_field(n, size, size // 4, generator) * occ
        return torch.where(occ < _AIR_BELOW, torch.full_like(hu, -1000.0), hu)

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        return hu_to_unit(self.hu(n, size, generator)).float()


# --------------------------------------------------------------------------------------------

class Mixture(Source):
    """A weighted mixture of sources: each image's component is drawn with probability ∝ weight;
    the components then fill their images in one batched call each."""

    def __init__(self, components: Sequence[tuple[Source, float]]) -> None:
        if not components:
            raise MedreconError("Mixture needs at least one (source, weight) pair, received none")
        sources = [s for s, _ in components]
        weights = [float(w) for _, w in components]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise MedreconError(f"Mixture weights must be >= 0 with a positive sum, received {weights}")
        kinds = {s.complex for s in sources}
        devices = {str(s.device) for s in sources}
        if len(kinds) != 1 or len(devices) != 1:
            raise MedreconError(f"Mixture components must share complex/real and device, received "
                                f"complex={[s.complex for s in sources]}, devices={[str(s.device) for s in sources]}")
        self.sources, self.weights = sources, [w / sum(weights) for w in weights]
        self.complex, self.device = sources[0].complex, sources[0].device

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "Mixture",
                "components": [{"weight": w, **s.recipe} for s, w in zip(self.sources, self.weights)]}

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        which = _choice(self.weights, n, generator)
        out = torch.empty((n, 1, size, size), device=self.device,
                          dtype=torch.complex64 if self.complex else torch.float32)
        for k, source in enumerate(self.sources):
            idx = torch.nonzero(which == k).flatten()
            if idx.numel():
                out[idx] = source.sample(idx.numel(), size, generator)
        return out



class Crops(Source):
    """Patch-based training data (in the spirit of PaDIS, Hu et al. 2024): a fraction of each batch
    are random ``size``² crops of ``crop_from``² images of ``source``, the rest whole ``size``² images.

    Whole images teach the global layout (an object on a background); crops teach local anatomy at
    twice the scale and tissue that fills the field of view, as in real clinical slices (e.g. a knee
    or abdomen cropped to the scanner's FOV), which whole generated images never show. Crops keep
    their parent image's value scale. Offsets are drawn per image from ``generator``.
    """

    def __init__(self, source: Source, crop_from: int, fraction: float = 0.5) -> None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise MedreconError(f"Crops: fraction must lie in [0, 1], received {fraction}")
        if int(crop_from) != crop_from or crop_from < 8:
            raise MedreconError(f"Crops: crop_from must be an integer >= 8, received {crop_from!r}")
        self.source, self.crop_from, self.fraction = source, int(crop_from), float(fraction)
        self.complex, self.device = source.complex, source.device

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "Crops", "crop_from": self.crop_from, "crop_fraction": self.fraction,
                "source": self.source.recipe}

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        if self.crop_from < size:
            raise MedreconError(f"Crops: crop_from ({self.crop_from}) must be >= the sample size ({size})")
        n_crop = int(round(self.fraction * n))
        parts = []
        if n_crop:
            big = self.source.sample(n_crop, self.crop_from, generator)[:, 0]          # [m, S, S]
            span = self.crop_from - size + 1
            oy = torch.randint(0, span, (n_crop,), device=self.device, generator=generator)
            ox = torch.randint(0, span, (n_crop,), device=self.device, generator=generator)
            idx = torch.arange(size, device=self.device)
            rows, cols = (oy[:, None] + idx)[:, :, None], (ox[:, None] + idx)[:, None, :]
            item = torch.arange(n_crop, device=self.device)[:, None, None]
            parts.append(big[item, rows, cols][:, None])
        if n - n_crop:
            parts.append(self.source.sample(n - n_crop, size, generator))
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def block_mean(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over non-overlapping ``factor × factor`` blocks of the last two axes (real or complex;
    each axis must be divisible by ``factor``). White noise of level σ becomes white noise of level
    σ / factor, which is what lets :class:`medrecon.priors.CoarseToFine` run a low-resolution prior."""
    *lead, h, w = x.shape
    if h % factor or w % factor:
        raise MedreconError(f"block_mean: image {h}×{w} is not divisible by the factor {factor}")
    return x.reshape(*lead, h // factor, factor, w // factor, factor).mean(dim=(-3, -1))


class Pooled(Source):
    """Low-resolution training data: ``size``² images made as ``(factor·size)``² images of ``source``
    averaged over ``factor × factor`` blocks (:func:`block_mean`).

    A prior trained on them is the coarse expert of :class:`medrecon.priors.CoarseToFine`: at high
    noise the MMSE denoiser of a full-resolution image is (nearly) the block-mean image's denoiser,
    upsampled, at the level σ / factor. Value scale as ``source`` (the scaling acts before pooling).
    """

    def __init__(self, source: Source, factor: int) -> None:
        if int(factor) != factor or factor < 1:
            raise MedreconError(f"Pooled: factor must be an integer >= 1, received {factor!r}")
        self.source, self.factor = source, int(factor)
        self.complex, self.device = source.complex, source.device

    @property
    def recipe(self) -> dict[str, Any]:
        return {"generator": "Pooled", "factor": self.factor, "rule": "mean over factor×factor blocks",
                "source": self.source.recipe}

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        return block_mean(self.source.sample(n, size * self.factor, generator), self.factor)

# --------------------------------------------------------------------------------------------

SOURCES: dict[str, str] = {
    "mri-brain": "BrainMRI: MNI152 brain slices, T1/T2/PD/FLAIR-like, complex",
    "mri-body": "BodyMRI: torso, limb and ellipse phantoms, complex",
    "mri-mixed": "70% mri-brain + 30% mri-body",
    "ct-head": "HeadCT: MNI152 head slices in HU, CT_SCALING",
    "ct-body": "BodyCT: torso, limb and ellipse phantoms in HU, CT_SCALING",
    "ct-mixed": "60% ct-head + 40% ct-body",
}


def make_source(name: str, device: Device, anatomy_path: Optional[Union[str, Path]] = None,
                split: str = "train", *, anatomy: Optional[Anatomy] = None) -> Source:
    """Build the synthetic source ``name`` (one of :data:`SOURCES`) on ``device``.

    The anatomy (for brain/head sources) is ``anatomy`` if given, else read from ``anatomy_path``
    (the ``.npz`` of :func:`medrecon.data.anatomy.export_anatomy`), else loaded from nilearn at 1 mm.
    ``split`` is "train" or "heldout" (:func:`slice_intervals`).
    """
    if name not in SOURCES:
        raise MedreconError(f"unknown data source {name!r}; expected one of {sorted(SOURCES)}")
    slice_intervals(split)
    if name in ("mri-body", "ct-body"):
        return (BodyMRI if name == "mri-body" else BodyCT)(device, split)
    if anatomy is None:
        anatomy = load_anatomy(anatomy_path)
    if name == "mri-brain":
        return BrainMRI(anatomy, device, split)
    if name == "ct-head":
        return HeadCT(anatomy, device, split)
    if name == "mri-mixed":
        return Mixture([(BrainMRI(anatomy, device, split), 0.7), (BodyMRI(device, split), 0.3)])
    return Mixture([(HeadCT(anatomy, device, split), 0.6), (BodyCT(device, split), 0.4)])
