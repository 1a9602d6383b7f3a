"""The medrecon sinogram HDF5 layout (CT measurements), read and written.

=====================  ======================================================================
``sinogram``           float32 ``[slices, views, detectors]``: line integrals of the image in
                       ``units`` (default ``"HU*pixel"``: the Radon transform of the HU image with
                       unit pixel spacing, i.e. Σ HU·(path length in pixels))
``angles``             float64 ``[views]``, radians (view angle of the source/ray direction)
``ground_truth``       optional float32 ``[slices, image_size, image_size]``, in HU
attrs ``geometry``     ``"parallel"`` or ``"fan"``
attrs ``image_size``   N: the reconstructed image is N×N pixels
attrs ``detectors``    number of detector bins (= ``sinogram.shape[-1]``)
attrs ``detector_spacing``   bin width, in pixels (parallel, flat fan) or radians (equiangular fan)
attrs ``source_distance``    source-to-isocentre distance in pixels (fan only)
attrs ``detector_distance``  isocentre-to-detector distance in pixels (fan only)
attrs ``detector_type``      ``"equiangular"`` or ``"flat"`` (fan only)
attrs ``units``        units of ``sinogram`` (``"HU*pixel"``) and ``ground_truth`` (``"HU"``)
attrs ``pixel_size_mm``      optional physical pixel size, for NIfTI/DICOM outputs
attrs ``dose``         optional incident photons per detector bin (I₀) of a post-log sinogram:
                       reconstruction then weights each bin by its Poisson noise
                       (``medrecon.recon.weight_by_dose``; needs ``pixel_size_mm``)
=====================  ======================================================================

Everything is written atomically (temporary name + ``os.replace``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import h5py
import numpy as np

from medrecon import MedreconError
from medrecon.io.atomic import atomic_path
from medrecon.io.fastmri import SliceSpec, _read, open_h5, select_slices

__all__ = ["SinogramVolume", "read_sinogram", "write_sinogram", "GEOMETRIES", "DETECTOR_TYPES"]

GEOMETRIES = ("parallel", "fan")
DETECTOR_TYPES = ("equiangular", "flat")
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class SinogramVolume:
    """A CT measurement: ``sinogram`` float32 ``[S, views, detectors]``, ``angles`` ``[views]`` (rad).

    ``ground_truth``: float32 ``[S, N, N]`` in HU or ``None``. Fan-beam fields are ``None`` for
    parallel geometry; ``detector_spacing`` ``None`` means the geometry's default.
    """

    sinogram: np.ndarray
    angles: np.ndarray
    geometry: str = "parallel"
    image_size: int = 0
    detector_spacing: Optional[float] = None
    source_distance: Optional[float] = None
    detector_distance: Optional[float] = None
    detector_type: Optional[str] = None
    units: str = "HU*pixel"
    ground_truth: Optional[np.ndarray] = None
    slices: list[int] = field(default_factory=list)
    num_slices: int = 0
    path: Optional[Path] = None
    pixel_size_mm: Optional[float] = None
    dose: Optional[float] = None

    @property
    def detectors(self) -> int:
        return int(self.sinogram.shape[-1])

    def validate(self, source: str) -> None:
        """Check shapes, finiteness and geometry attributes; raise ``MedreconError`` naming ``source``."""
        s = self.sinogram
        if s.ndim != 3:
            raise MedreconError(f"{source}: 'sinogram' must be [slices, views, detectors], received shape {s.shape}")
        if s.dtype.kind != "f":
            raise MedreconError(f"{source}: 'sinogram' must be real (float32), received dtype {s.dtype}")
        if not np.isfinite(s).all():
            raise MedreconError(f"{source}: 'sinogram' contains NaN or Inf values")
        if self.angles.ndim != 1 or self.angles.shape[0] != s.shape[1]:
            raise MedreconError(f"{source}: 'angles' must have shape [{s.shape[1]}] (one per view), received {self.angles.shape}")
        if self.geometry not in GEOMETRIES:
            raise MedreconError(f"{source}: attribute geometry must be one of {GEOMETRIES}, received {self.geometry!r}")
        if self.image_size <= 0:
            raise MedreconError(f"{source}: attribute image_size must be a positive integer, received {self.image_size}")
        if self.geometry == "fan":
            if self.source_distance is None or self.detector_distance is None:
                raise MedreconError(f"{source}: fan geometry needs attributes source_distance and detector_distance")
            if self.detector_type not in DETECTOR_TYPES:
                raise MedreconError(f"{source}: attribute detector_type must be one of {DETECTOR_TYPES}, received {self.detector_type!r}")
        if self.dose is not None and not (math.isfinite(self.dose) and self.dose > 0):
            raise MedreconError(f"{source}: attribute dose must be a positive photon count per bin, received {self.dose}")
        if self.ground_truth is not None and self.ground_truth.shape[1:] != (self.image_size, self.image_size):
            raise MedreconError(
                f"{source}: 'ground_truth' must be [slices, {self.image_size}, {self.image_size}], received {self.ground_truth.shape}"
            )


def _opt(attrs: h5py.AttributeManager, key: str, kind=float):
    if key not in attrs:
        return None
    v = attrs[key]
    v = v.decode() if isinstance(v, bytes) else v
    return kind(v)


def read_sinogram(path: PathLike, slices: SliceSpec = None) -> SinogramVolume:
    """Read the requested ``slices`` of a sinogram file (layout in the module docstring)."""
    p = Path(path)
    with open_h5(p) as hf:
        if "sinogram" not in hf:
            raise MedreconError(f"{p}: no 'sinogram' dataset (found: {', '.join(sorted(hf.keys())) or 'nothing'})")
        ds = hf["sinogram"]
        if ds.ndim != 3:
            raise MedreconError(f"{p}: 'sinogram' must be [slices, views, detectors], received shape {ds.shape}")
        if "angles" not in hf:
            raise MedreconError(f"{p}: no 'angles' dataset (radians, one per view)")
        idx = select_slices(slices, ds.shape[0], str(p))
        sino = _read(ds, idx, str(p))
        if sino.dtype.kind == "f":
            sino = sino.astype(np.float32, copy=False)
        gt = _read(hf["ground_truth"], idx, str(p)).astype(np.float32) if "ground_truth" in hf else None
        a = hf.attrs
        vol = SinogramVolume(
            sinogram=sino,
            angles=np.asarray(hf["angles"][()], dtype=np.float64),
            geometry=_opt(a, "geometry", str) or "parallel",
            image_size=_opt(a, "image_size", int) or 0,
            detector_spacing=_opt(a, "detector_spacing"),
            source_distance=_opt(a, "source_distance"),
            detector_distance=_opt(a, "detector_distance"),
            detector_type=_opt(a, "detector_type", str),
            units=_opt(a, "units", str) or "HU*pixel",
            ground_truth=gt,
            slices=idx,
            num_slices=int(ds.shape[0]),
            path=p,
            pixel_size_mm=_opt(a, "pixel_size_mm"),
            dose=_opt(a, "dose"),
        )
        declared = _opt(a, "detectors", int)
    if declared is not None and declared != vol.detectors:
        raise MedreconError(f"{p}: attribute detectors = {declared} but 'sinogram' has {vol.detectors} bins")
    vol.validate(str(p))
    return vol


def write_sinogram(path: PathLike, vol: SinogramVolume) -> Path:
    """Write ``vol`` atomically in the layout of the module docstring (validated first)."""
    vol.validate(str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("sinogram", data=np.asarray(vol.sinogram, dtype=np.float32))
        hf.create_dataset("angles", data=np.asarray(vol.angles, dtype=np.float64))
        if vol.ground_truth is not None:
            hf.create_dataset("ground_truth", data=np.asarray(vol.ground_truth, dtype=np.float32))
            hf.attrs["max"] = float(np.max(vol.ground_truth))
        hf.attrs["geometry"] = vol.geometry
        hf.attrs["image_size"] = int(vol.image_size)
        hf.attrs["detectors"] = vol.detectors
        hf.attrs["units"] = vol.units
        for key in ("detector_spacing", "source_distance", "detector_distance", "detector_type", "pixel_size_mm", "dose"):
            value = getattr(vol, key)
            if value is not None:
                hf.attrs[key] = value
    return Path(path)
