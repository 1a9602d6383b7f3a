"""physics — forward models of what a scanner measures (MRI k-space, CT sinograms).

Usable on its own: it never imports ``medrecon``. Names are imported lazily so that
``import physics`` stays cheap and optional parts (sigpy, triton) load only when used.
"""
from __future__ import annotations

import importlib
from typing import Any

from physics.fourier import fft2c, ifft2c
from physics.operator import Composed, Identity, LinearOperator, Scaled, Weighted, conjugate_gradient, inner

_LAZY = {
    "SingleCoilMRI": "physics.mri",
    "MultiCoilMRI": "physics.mri",
    "ParallelBeam": "physics.ct",
    "FanBeam": "physics.ct",
    "Radon": "physics.ct",
}
_SUBMODULES = {"masks", "coils", "mri", "ct", "kernels"}

__all__ = [
    "fft2c", "ifft2c", "LinearOperator", "Composed", "Identity", "Scaled", "Weighted", "conjugate_gradient", "inner",
    *_LAZY, *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"physics.{name}")
    raise AttributeError(f"module 'physics' has no attribute {name!r}")
