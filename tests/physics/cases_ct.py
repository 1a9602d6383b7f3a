"""Registry cases for the CT Radon operator (``physics.ct``), run by ``test_operators.py``.

Small geometries (16² images) so the shared checks stay fast; no closed-form norms. The normal matrix
of a Radon operator can be singular or badly conditioned (few views), so CG runs on a damped system.
"""
from __future__ import annotations

import math

import torch

from physics import FanBeam, ParallelBeam, Radon, Weighted
from tests.physics.registry import OperatorCase

_DAMPING = 1.0


def _parallel_16_12(real_dtype: torch.dtype) -> OperatorCase:
    angles = torch.arange(12, dtype=torch.float64) * math.pi / 12
    return OperatorCase(Radon(ParallelBeam(16, angles)), pinv_damping=_DAMPING)


def _fan_equiangular(real_dtype: torch.dtype) -> OperatorCase:
    angles = torch.arange(10, dtype=torch.float64) * 2 * math.pi / 10
    return OperatorCase(Radon(FanBeam(16, angles, source_distance=30.0, detector_distance=20.0)), pinv_damping=_DAMPING)


def _fan_flat(real_dtype: torch.dtype) -> OperatorCase:
    angles = torch.arange(10, dtype=torch.float64) * 2 * math.pi / 10 + 0.3
    geometry = FanBeam(16, angles, source_distance=14.0, detector_distance=10.0, detector="flat")  # wide fan
    return OperatorCase(Radon(geometry), pinv_damping=_DAMPING)


def _parallel_per_item(real_dtype: torch.dtype) -> OperatorCase:
    g = torch.Generator().manual_seed(0)
    angles = torch.rand((2, 9), generator=g, dtype=torch.float64) * math.pi  # [B=2, views]
    return OperatorCase(Radon(ParallelBeam(16, angles, detector_spacing=0.7)), pinv_damping=_DAMPING)


def _parallel_limited_angle(real_dtype: torch.dtype) -> OperatorCase:
    angles = torch.linspace(-math.pi / 6, math.pi / 3, 15, dtype=torch.float64)  # a 90° wedge
    return OperatorCase(Radon(ParallelBeam(15, angles, detectors=19, detector_spacing=1.3)), pinv_damping=_DAMPING)


def _parallel_weighted(real_dtype: torch.dtype) -> OperatorCase:
    """A statistically weighted (PWLS) projector: per-bin weights for a batch of 2."""
    radon = Radon(ParallelBeam(16, torch.arange(12, dtype=torch.float64) * math.pi / 12))
    g = torch.Generator().manual_seed(1)
    w = 0.2 + torch.rand((2, *radon.oshape), generator=g, dtype=real_dtype)
    return OperatorCase(Weighted(radon, w), pinv_damping=_DAMPING)


CASES = {
    "radon-parallel-16-12views": _parallel_16_12,
    "radon-fan-equiangular": _fan_equiangular,
    "radon-fan-flat-wide": _fan_flat,
    "radon-parallel-per-item-angles": _parallel_per_item,
    "radon-parallel-limited-angle": _parallel_limited_angle,
    "radon-parallel-weighted": _parallel_weighted,
}
