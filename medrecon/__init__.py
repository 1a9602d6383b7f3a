"""medrecon — medical image reconstruction by posterior sampling with score-based diffusion priors."""
from __future__ import annotations

__version__ = "0.1.0"


class MedreconError(ValueError):
    """Bad input or configuration: the message names the file/dataset and what was expected."""


__all__ = ["MedreconError", "__version__"]
