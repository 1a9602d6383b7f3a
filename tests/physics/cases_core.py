"""Registry cases for the generic building blocks of ``physics.operator``."""
from __future__ import annotations

import torch

from physics import Identity, Weighted
from tests.physics.registry import OperatorCase


def _identity(real_dtype: torch.dtype) -> OperatorCase:
    return OperatorCase(Identity((1, 5, 6)), norm=1.0)


def _scaled_composed(real_dtype: torch.dtype) -> OperatorCase:
    op = 2.5 * (Identity((1, 4, 4), "real") @ Identity((1, 4, 4), "real"))
    return OperatorCase(op, norm=2.5)


def _adjoint_of_composed(real_dtype: torch.dtype) -> OperatorCase:
    return OperatorCase((3.0 * Identity((2, 3, 3))).H, norm=3.0)


def _weighted_identity(real_dtype: torch.dtype) -> OperatorCase:
    w = torch.linspace(0.5, 3.0, 12, dtype=real_dtype).reshape(1, 3, 4)  # ‖diag(w)‖ = max w
    return OperatorCase(Weighted(Identity((1, 3, 4)), w), norm=3.0)


def _weighted_per_item(real_dtype: torch.dtype) -> OperatorCase:
    w = torch.stack([torch.full((1, 3, 3), 2.0, dtype=real_dtype), torch.full((1, 3, 3), 0.5, dtype=real_dtype)])
    return OperatorCase(Weighted(Identity((1, 3, 3)), w), norm=2.0)  # batch 2: the norm is the largest item's


CASES = {"identity": _identity, "scaled-composed": _scaled_composed, "adjoint-of-scaled": _adjoint_of_composed,
         "weighted-identity": _weighted_identity, "weighted-per-item": _weighted_per_item}
