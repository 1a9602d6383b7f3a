"""The operator registry shared by ``test_operators.py``: case modules contribute ``CASES`` dicts."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from physics import LinearOperator

CASE_MODULES = ["tests.physics.cases_core", "tests.physics.cases_mri", "tests.physics.cases_ct"]


@dataclass
class OperatorCase:
    op: LinearOperator
    norm: Optional[float] = None  # closed-form spectral norm, when known
    pinv_damping: float = 0.0  # > 0 for operators whose normal matrix is singular, to keep CG well posed


def all_cases() -> dict[str, Callable[[torch.dtype], OperatorCase]]:
    cases: dict[str, Callable[[torch.dtype], OperatorCase]] = {}
    for name in CASE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a case module not written yet
            if err.name == name:
                continue
            raise
        overlap = set(cases) & set(module.CASES)
        assert not overlap, f"duplicate operator case names {overlap}"
        cases.update(module.CASES)
    return cases
