"""Training and evaluation data for the priors: synthetic generators and file-backed sources.

Every data source has one interface, :class:`Source`: ``source.sample(n, size, generator)``
returns a batch ``[n, 1, size, size]`` on ``source.device`` drawn with the given
``torch.Generator`` (same seed → same batch), ``complex64`` for MRI (``source.complex``) and
``float32`` for CT; ``source.recipe`` is a JSON-able dict for the checkpoint manifest.

Value conventions (recorded in every recipe and inverted at reconstruction time):

* **MRI** images are divided by :func:`magnitude_scale`, so the 99.5th percentile of each
  image's magnitude is 1 (:data:`MRI_SCALING`). Reconstruction scales the measurement by the same
  rule applied to a first estimate (e.g. the zero-filled image) and multiplies the result back.
* **CT** images are in Hounsfield units mapped linearly by :data:`CT_SCALING`:
  ``unit = (HU - hu_min) / (hu_max - hu_min)`` clipped to [0, 1], i.e. air (−1000 HU) → 0 and
  2000 HU (dense bone) → 1; :func:`unit_to_hu` inverts it.

Names: ``make_source``, ``SOURCES``, ``BrainMRI``, ``BodyMRI``, ``HeadCT``, ``BodyCT``,
``Mixture`` (from :mod:`medrecon.data.synthetic`); ``FastMRISource``, ``NiftiSource``,
``DicomSource`` (from :mod:`medrecon.data.sources`); ``Anatomy``, ``load_anatomy``,
``export_anatomy`` (from :mod:`medrecon.data.anatomy`). They load lazily.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Union

import torch

from medrecon import MedreconError

__all__ = [
    "Source", "MRI_SCALING", "CT_SCALING", "magnitude_scale", "normalise_magnitude", "hu_to_unit",
    "unit_to_hu", "check_generator",
    "make_source", "SOURCES", "BrainMRI", "BodyMRI", "HeadCT", "BodyCT", "Mixture", "Crops",
    "FastMRISource", "NiftiSource", "DicomSource", "Anatomy", "load_anatomy", "export_anatomy",
]

MRI_SCALING: dict[str, Any] = {
    "kind": "magnitude_percentile",
    "percentile": 99.5,
    "floor_fraction_of_max": 0.1,
    "rule": "x / max(quantile(|x|, 0.995), 0.1 * max|x|) per image; the floor only acts on "
            "nearly empty images",
}

CT_SCALING: dict[str, Any] = {
    "kind": "hu_window",
    "hu_min": -1000.0,
    "hu_max": 2000.0,
    "clip": True,
    "rule": "unit = clip((HU - hu_min) / (hu_max - hu_min), 0, 1); HU = hu_min + unit * (hu_max - hu_min)",
}

_LAZY = {
    "make_source": "synthetic", "SOURCES": "synthetic", "BrainMRI": "synthetic", "BodyMRI": "synthetic",
    "HeadCT": "synthetic", "BodyCT": "synthetic", "Mixture": "synthetic", "Crops": "synthetic",
    "FastMRISource": "sources", "NiftiSource": "sources", "DicomSource": "sources",
    "Anatomy": "anatomy", "load_anatomy": "anatomy", "export_anatomy": "anatomy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"medrecon.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'medrecon.data' has no attribute {name!r}")


def magnitude_scale(x: torch.Tensor) -> torch.Tensor:
    """Per-image scale ``[B]`` of a batch ``[B, C, H, W]`` (real or complex): the 99.5th percentile
    of ``|x|`` over ``C, H, W``, floored at 0.1·max|x| (and at the smallest positive float so an
    all-zero image keeps scale 1 rather than dividing by 0). See :data:`MRI_SCALING`."""
    if x.ndim != 4:
        raise MedreconError(f"magnitude_scale expects [B, C, H, W], received shape {tuple(x.shape)}")
    mag = x.abs().flatten(1).float()
    q = torch.quantile(mag, MRI_SCALING["percentile"] / 100.0, dim=1)
    floor = MRI_SCALING["floor_fraction_of_max"] * mag.amax(dim=1)
    scale = torch.maximum(q, floor)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def normalise_magnitude(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x / scale, scale)`` with ``scale = magnitude_scale(x)`` ``[B]`` (:data:`MRI_SCALING`)."""
    scale = magnitude_scale(x)
    return x / scale.to(x.real.dtype if x.is_complex() else x.dtype)[:, None, None, None], scale


def hu_to_unit(hu: torch.Tensor, clip: bool = CT_SCALING["clip"]) -> torch.Tensor:
    """Hounsfield units → the [0, 1] value scale of CT priors (:data:`CT_SCALING`)."""
    lo, hi = CT_SCALING["hu_min"], CT_SCALING["hu_max"]
    unit = (hu - lo) / (hi - lo)
    return unit.clamp(0.0, 1.0) if clip else unit


def unit_to_hu(unit: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hu_to_unit` (exact inside the window): ``HU = hu_min + unit·(hu_max − hu_min)``."""
    lo, hi = CT_SCALING["hu_min"], CT_SCALING["hu_max"]
    return lo + unit * (hi - lo)


def check_generator(generator: torch.Generator, device: torch.device, where: str) -> None:
    """Raise unless ``generator`` is a ``torch.Generator`` on ``device`` (type and index)."""
    if not isinstance(generator, torch.Generator):
        raise MedreconError(f"{where} needs a torch.Generator, received {type(generator).__name__}")
    g = generator.device
    if g.type != device.type or (g.index is not None and device.index is not None and g.index != device.index):
        raise MedreconError(f"{where}: generator is on {g}, but the source draws on {device}; "
                            f"create it with torch.Generator(device={str(device)!r})")


class Source(ABC):
    """A stream of training images: ``sample(n, size, generator) -> [n, 1, size, size]``.

    Attributes: ``complex`` (True → ``complex64`` MRI images, False → ``float32`` CT images in
    :data:`CT_SCALING` units), ``channels`` (1), ``device`` and ``recipe`` (a JSON-able dict
    describing the data, stored in the checkpoint manifest).
    """

    channels: int = 1
    complex: bool
    device: torch.device

    @property
    @abstractmethod
    def recipe(self) -> dict[str, Any]:
        """JSON-able description of the data (generator, parameters, scaling)."""

    @abstractmethod
    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` images ``[n, 1, size, size]`` (arguments already validated)."""

    def sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """A batch ``[n, 1, size, size]`` on ``self.device`` (``complex64`` if ``self.complex``
        else ``float32``), deterministic given the state of ``generator`` (on ``self.device``)."""
        if int(n) != n or n < 1:
            raise MedreconError(f"{type(self).__name__}.sample: n must be a positive integer, received {n!r}")
        if int(size) != size or size < 8:
            raise MedreconError(f"{type(self).__name__}.sample: size must be an integer >= 8, received {size!r}")
        check_generator(generator, self.device, f"{type(self).__name__}.sample")
        out = self._sample(int(n), int(size), generator)
        expected = torch.complex64 if self.complex else torch.float32
        assert out.shape == (n, 1, size, size) and out.dtype == expected, (out.shape, out.dtype)
        return out


def as_device(device: Union[str, torch.device]) -> torch.device:
    """``torch.device`` from a string or device (``"cuda"`` gets the current index)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device
