"""Registry cases for the generic building blocks of ``physics.operator``."""
from __future__ import annotations

import torch

from physics import Identity
from tests.physics.registry import OperatorCase


def _identity(real_dtype: torch.dtype) -> OperatorCase:
    return OperatorCase(Identity((1, 5, 6)), norm=1.0)


def _scaled_composed(real_dtype: torch.dtype) -> OperatorCase:
    op = 2.5 * (Identity((1, 4, 4), "real") @ Identity((1, 4, 4), "real"))
    return OperatorCase(op, norm=2.5)


def _adjoint_of_composed(real_dtype: torch.dtype) -> OperatorCase:
    return OperatorCase((3.0 * Identity((2, 3, 3))).H, norm=3.0)


CASES = {"identity": _identity, "scaled-composed": _scaled_composed, "adjoint-of-scaled": _adjoint_of_composed}
