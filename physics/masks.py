"""Cartesian k-space sampling masks: the fastMRI families, 1-D Gaussian variable density, Poisson disc.

Layout and conventions
----------------------
* A **column mask** is a ``torch.bool`` tensor ``[W]`` (on the CPU) over the last (phase-encode) axis of centred
  k-space ``[..., H, W]`` (the fastMRI layout: every sampled column is a full readout line). Pass
  ``mask[None]`` (``[1, W]``) or a stack ``[B, W]`` to :class:`physics.SingleCoilMRI` /
  :class:`physics.MultiCoilMRI`.
* A **2-D mask** (:func:`poisson_disc`) is ``torch.bool`` ``[H, W]``; pass ``mask[None]``.
* The acceleration of a mask is ``R = numel / count`` (:func:`acceleration_of`).
* The low-frequency block (the ACS / calibration region) of ``n = round(W · center_fraction)``
  columns starts at ``(W − n + 1) // 2`` (:func:`center_slice`), so it covers the centre column
  ``W // 2`` of the ``fftshift`` layout. ``round`` is Python's (half to even), as in fastMRI.

Seeding (fastMRI semantics)
---------------------------
``random``, ``equispaced``, ``equispaced_fraction`` and ``gaussian_1d`` draw from a private
``numpy.random.RandomState(seed)`` (nothing global is read or changed). ``seed`` may be an int or a
tuple of ints; fastMRI's data transforms seed with ``tuple(map(ord, filename))`` so that **every
slice of a volume gets the same mask**: call with that seed once per slice (or once per volume and
reuse the mask). For a single ``(center_fraction, acceleration)`` pair, fastMRI's
``RandomMaskFunc``, ``EquiSpacedMaskFunc`` and ``EquispacedMaskFractionFunc`` called with the same
seed consume the same random stream in the same order, so the masks here equal theirs column for
column. ``seed=None`` draws fresh OS entropy (non-reproducible).

Reference: J. Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI",
arXiv:1811.08839 (2018); ``fastmri/data/subsample.py`` (MIT licence), whose definitions are
re-implemented here.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "random",
    "equispaced",
    "equispaced_fraction",
    "gaussian_1d",
    "poisson_disc",
    "acceleration_of",
    "center_slice",
]

Seed = Optional[Union[int, Sequence[int]]]


# -- validation and shared pieces ---------------------------------------------------------------
def _check_width(width: int) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive int, received {width!r}")
    return int(width)


def _check_acceleration(acceleration: float) -> float:
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float, np.integer, np.floating)):
        raise ValueError(f"acceleration must be a number >= 1, received {acceleration!r}")
    if not math.isfinite(acceleration) or acceleration < 1:
        raise ValueError(f"acceleration must be a finite number >= 1, received {acceleration!r}")
    return float(acceleration)


def _check_center_fraction(center_fraction: float) -> float:
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float, np.integer, np.floating)):
        raise ValueError(f"center_fraction must be a number in [0, 1), received {center_fraction!r}")
    if not 0 <= center_fraction < 1:
        raise ValueError(f"center_fraction must lie in [0, 1), received {center_fraction!r}")
    return float(center_fraction)


def center_slice(width: int, center_fraction: float) -> slice:
    """The fully sampled low-frequency columns: ``n = round(width · center_fraction)`` columns from
    ``(width − n + 1) // 2`` (fastMRI's ``calculate_center_mask``)."""
    width = _check_width(width)
    n = round(width * _check_center_fraction(center_fraction))
    start = (width - n + 1) // 2
    return slice(start, start + n)


def _center_mask(width: int, center_fraction: float) -> np.ndarray:
    mask = np.zeros(width, dtype=bool)
    mask[center_slice(width, center_fraction)] = True
    return mask


def _num_low(width: int, center_fraction: float) -> int:
    s = center_slice(width, center_fraction)
    return s.stop - s.start


def _require_room(width: int, acceleration: float, num_low: int, family: str) -> None:
    # Both the random probability and the adjusted equispaced rate need N_low < W / R.
    if num_low * acceleration >= width:
        raise ValueError(
            f"{family}: the centre block of round(width·center_fraction) = {num_low} columns already "
            f"reaches width/acceleration = {width}/{acceleration:g} = {width / acceleration:.4g} columns; "
            f"expected num_low · acceleration < width"
        )


def _rng(seed: Seed) -> np.random.RandomState:
    if seed is not None and not isinstance(seed, (int, np.integer)):
        seed = tuple(int(s) for s in seed)
    return np.random.RandomState(seed)


def _out(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))


def acceleration_of(mask: torch.Tensor) -> float:
    """The acceleration ``R = numel / number of sampled entries`` of a 0/1 (or bool) mask of any shape."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"acceleration_of expects a torch.Tensor, received {type(mask).__name__}")
    count = int(torch.count_nonzero(mask))
    if count == 0:
        raise ValueError(f"the mask of shape {tuple(mask.shape)} samples nothing; its acceleration is undefined")
    return mask.numel() / count


# -- the fastMRI families -----------------------------------------------------------------------
def random(width: int, acceleration: float, center_fraction: float, seed: Seed = None) -> torch.Tensor:
    """fastMRI ``RandomMaskFunc``: the centre block plus columns drawn independently.

    With ``N_low = round(W · center_fraction)``, each column is kept when ``u < p`` for ``u ~ U[0, 1)``
    (one draw per column, all W of them, from ``RandomState(seed)``) with
    ``p = (W / R − N_low) / (W − N_low)``; the centre block is then forced on. The expected number
    of sampled columns is exactly ``W / R``.

    Returns a ``torch.bool`` tensor ``[width]``.
    """
    width, acceleration = _check_width(width), _check_acceleration(acceleration)
    num_low = _num_low(width, center_fraction)
    _require_room(width, acceleration, num_low, "random")
    prob = (width / acceleration - num_low) / (width - num_low)
    outer = _rng(seed).uniform(size=width) < prob
    return _out(outer | _center_mask(width, center_fraction))


def equispaced(
    width: int, acceleration: int, center_fraction: float, seed: Seed = None, offset: Optional[int] = None
) -> torch.Tensor:
    """fastMRI ``EquiSpacedMaskFunc``: the centre block plus every ``R``-th column from ``offset``.

    ``offset`` defaults to a draw ``randint(0, R)`` from ``RandomState(seed)``. The columns are
    exactly equispaced (GRAPPA style), so with a centre block the true acceleration is below ``R``.
    ``acceleration`` must be an integer here.

    Returns a ``torch.bool`` tensor ``[width]``.
    """
    width, acc = _check_width(width), _check_acceleration(acceleration)
    if acc != int(acc):
        raise ValueError(f"equispaced: acceleration must be an integer (a column step), received {acceleration!r}")
    step = int(acc)
    if offset is None:
        offset = int(_rng(seed).randint(0, step))
    elif not 0 <= int(offset) < step:
        raise ValueError(f"equispaced: offset must lie in [0, {step}), received {offset!r}")
    outer = np.zeros(width, dtype=bool)
    outer[int(offset) :: step] = True
    return _out(outer | _center_mask(width, center_fraction))


def equispaced_fraction(
    width: int, acceleration: float, center_fraction: float, seed: Seed = None, offset: Optional[int] = None
) -> torch.Tensor:
    """fastMRI ``EquispacedMaskFractionFunc``: the centre block plus near-equispaced columns whose
    spacing is adjusted so that the total approaches ``W / R``.

    With ``N_low = round(W · center_fraction)`` the spacing is

        R_adj = R · (N_low − W) / (N_low · R − W)

    and the outer columns are ``round(offset + j · R_adj) < W − 1`` for ``j = 0, 1, …``, with
    ``offset`` defaulting to ``randint(0, round(R_adj))`` from ``RandomState(seed)``. E.g. at
    ``W = 368``: ``R = 4, center_fraction = 0.08`` gives ``R_adj = 5.381`` and an actual R ≈ 4.04;
    ``R = 8, 0.04`` gives ``R_adj = 11.39`` and R ≈ 8.18.

    Returns a ``torch.bool`` tensor ``[width]``.
    """
    width, acceleration = _check_width(width), _check_acceleration(acceleration)
    num_low = _num_low(width, center_fraction)
    _require_room(width, acceleration, num_low, "equispaced_fraction")
    adjusted = acceleration * (num_low - width) / (num_low * acceleration - width)
    high = round(adjusted)
    if offset is None:
        offset = int(_rng(seed).randint(0, high))
    elif not 0 <= int(offset) < high:
        raise ValueError(f"equispaced_fraction: offset must lie in [0, round(R_adj) = {high}), received {offset!r}")
    outer = np.zeros(width, dtype=bool)
    outer[np.around(np.arange(int(offset), width - 1, adjusted)).astype(np.int64)] = True
    return _out(outer | _center_mask(width, center_fraction))


# -- variable density ---------------------------------------------------------------------------
def gaussian_1d(
    width: int,
    acceleration: float,
    center_fraction: float,
    seed: Seed = None,
    std: Optional[float] = None,
) -> torch.Tensor:
    """1-D Gaussian variable-density column mask with exactly ``round(W / R)`` sampled columns.

    The centre block (:func:`center_slice`) is always sampled; the remaining
    ``round(W / R) − N_low`` columns are drawn without replacement from the other columns with
    probability proportional to ``exp(−(k − W//2)² / (2·std²))`` (``k`` the column index, ``W//2``
    the DC column of the centred layout). ``std`` is in columns and defaults to ``W / 8``.

    Returns a ``torch.bool`` tensor ``[width]``.
    """
    width, acceleration = _check_width(width), _check_acceleration(acceleration)
    std = width / 8 if std is None else float(std)
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"gaussian_1d: std must be a positive number of columns, received {std!r}")
    mask = _center_mask(width, center_fraction)
    total = round(width / acceleration)
    extra = total - int(mask.sum())
    if extra < 0:
        raise ValueError(
            f"gaussian_1d: the centre block ({int(mask.sum())} columns) exceeds round(width/acceleration) = {total}"
        )
    candidates = np.flatnonzero(~mask)
    if extra > 0:
        weights = np.exp(-0.5 * ((candidates - width // 2) / std) ** 2)
        # Guard against weights that underflow to zero far from the centre.
        weights = np.maximum(weights, np.finfo(np.float64).tiny)
        picked = _rng(seed).choice(candidates, size=extra, replace=False, p=weights / weights.sum())
        mask[picked] = True
    return _out(mask)


def poisson_disc(
    shape: Sequence[int],
    acceleration: float,
    calib: Sequence[int] = (24, 24),
    seed: Optional[int] = 0,
    crop_corner: bool = True,
    tol: float = 0.1,
) -> torch.Tensor:
    """2-D variable-density Poisson-disc mask ``[H, W]`` (``torch.bool``) through ``sigpy.mri.poisson``.

    The density falls as ``1 / (1 + s·|r|)`` outside a fully sampled ``calib`` block; sigpy bisects the
    slope ``s`` until the acceleration is within ``tol`` of ``acceleration`` (it raises ``ValueError``
    when it cannot). ``crop_corner`` removes the k-space corners (``|r| ≥ 1``). ``seed`` must be an
    int (or None: unseeded); sigpy seeds numba's private generator with it, never NumPy's global one.

    Reference: R. Bridson, "Fast Poisson disk sampling in arbitrary dimensions", SIGGRAPH sketches 2007.
    """
    import sigpy.mri

    shape = tuple(shape)
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 1 for s in shape):
        raise ValueError(f"poisson_disc: shape must be (H, W) with H, W > 1, received {shape!r}")
    calib = tuple(calib)
    if len(calib) != 2 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= s for c, s in zip(calib, shape)):
        raise ValueError(f"poisson_disc: calib must be two ints within the shape {shape}, received {calib!r}")
    acceleration = _check_acceleration(acceleration)
    if acceleration <= 1:
        raise ValueError(f"poisson_disc: acceleration must be > 1, received {acceleration!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"poisson_disc: seed must be an int or None, received {seed!r}")
    mask = sigpy.mri.poisson(
        shape, acceleration, calib=calib, dtype=np.float32, crop_corner=crop_corner, seed=seed, tol=tol
    )
    return _out(mask != 0)
