"""Registry cases for the Cartesian MRI operators (``physics.mri``), run by ``test_operators.py``.

Closed-form norms: ‖M F‖ = max(mask) (F unitary, M diagonal), so 1 for any binary mask that samples
something. For SENSE with Σ_c |S_c|² = 1 per pixel, S is an isometry, so ‖M F S‖ ≤ 1 with equality
when the mask is full, or when the maps vary along H only and the mask is a column mask (then S
commutes with the W-transform and the column mask, and ‖A‖ = ‖S‖·‖M F_W‖ = 1). For general maps and
undersampling ‖A‖ < 1 and has no closed form (birdcage maps with a 2-D random mask: no norm given).
"""
from __future__ import annotations

import torch

from physics import MultiCoilMRI, SingleCoilMRI, coils, masks
from tests.physics.registry import OperatorCase

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _single_column_mask(real_dtype: torch.dtype) -> OperatorCase:
    mask = masks.random(10, acceleration=3, center_fraction=0.2, seed=0)[None]  # [1, W]
    return OperatorCase(SingleCoilMRI(mask, shape=(7, 10)), norm=1.0)


def _single_per_item_2d(real_dtype: torch.dtype) -> OperatorCase:
    g = torch.Generator().manual_seed(0)
    mask = torch.rand((3, 6, 8), generator=g) < 0.4  # [B=3, H, W], one mask per item
    mask[:, 3, 4] = True  # the DC sample: every item samples something
    return OperatorCase(SingleCoilMRI(mask), norm=1.0)


def _single_weighted(real_dtype: torch.dtype) -> OperatorCase:
    g = torch.Generator().manual_seed(1)
    weights = (0.9 * torch.rand((1, 9), generator=g, dtype=torch.float64)).to(real_dtype)
    weights[0, 4] = 0.9  # the largest weight: ‖A‖ = max(mask), the weight is applied once
    return OperatorCase(SingleCoilMRI(weights, shape=(5, 9)), norm=0.9)


def _unit_maps_along_h(batch: int, n_coils: int, h: int, w: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Random complex maps that vary along H only, normalised so that Σ_c |S_c|² = 1 per pixel."""
    g = torch.Generator().manual_seed(seed)
    s = torch.complex(*torch.randn((2, batch, n_coils, h, 1), generator=g, dtype=torch.float64))
    s = s / s.abs().square().sum(dim=1, keepdim=True).sqrt()
    return s.expand(batch, n_coils, h, w).to(dtype)


def _multi_per_item_maps(real_dtype: torch.dtype) -> OperatorCase:
    # 4 coils, non-square 8 x 10, batch 2: per-item maps (varying along H, Σ|S|² = 1) and per-item
    # column masks, so ‖A‖ = 1 exactly (module docstring).
    maps = _unit_maps_along_h(2, 4, 8, 10, seed=2, dtype=_COMPLEX[real_dtype])
    mask = torch.stack([masks.equispaced(10, 2, 0.2, offset=0), masks.equispaced(10, 3, 0.2, offset=1)])
    return OperatorCase(MultiCoilMRI(mask, maps), norm=1.0)


def _multi_birdcage_shared_2d(real_dtype: torch.dtype) -> OperatorCase:
    # Shared state (batch=None): one 2-D random mask and one set of birdcage maps, broadcast over any
    # batch. ‖A‖ < 1 here with no closed form.
    g = torch.Generator().manual_seed(3)
    mask = torch.rand((1, 6, 7), generator=g) < 0.5
    return OperatorCase(MultiCoilMRI(mask, coils.birdcage(3, 6, 7, dtype=_COMPLEX[real_dtype])))


def _multi_fully_sampled(real_dtype: torch.dtype) -> OperatorCase:
    # A full mask makes SENSE with Σ|S|² = 1 an isometry: ‖A‖ = 1 (and AᴴA = I).
    maps = coils.birdcage(5, 9, 6, r=2.0, dtype=_COMPLEX[real_dtype])
    return OperatorCase(MultiCoilMRI(torch.ones(1, 6, dtype=torch.bool), maps), norm=1.0)


CASES = {
    "mri-single-column-mask": _single_column_mask,
    "mri-single-per-item-2d-masks-b3": _single_per_item_2d,
    "mri-single-weighted-mask": _single_weighted,
    "mri-multi-4coils-8x10-per-item-maps": _multi_per_item_maps,
    "mri-multi-birdcage-shared-2d-mask": _multi_birdcage_shared_2d,
    "mri-multi-fully-sampled": _multi_fully_sampled,
}
