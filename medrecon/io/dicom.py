"""DICOM input through pydicom: one file (a slice) or a series folder (a volume).

Pixel values become physical values with the modality LUT: ``value = stored · RescaleSlope +
RescaleIntercept`` (for CT this is Hounsfield units).

Padding: pixels outside the reconstructed field of view carry no measurement. DICOM marks them
with ``PixelPaddingValue`` (optionally a range up to ``PixelPaddingRangeLimit``, PS3.3 C.7.5.1.1.2),
in stored units; CT scanners also write values far below the Hounsfield scale there without the
tag (GE −2000 HU, Siemens/Philips −3024 HU), and lossy JPEG 2000 rings around them. By default
(``padding="air"``) padded pixels, and values of a rescaled CT below −1024 HU (the bottom of the
12-bit CT number range; a μ < 0 that only noise or padding gives), become air: −1000 HU for a
rescaled CT, the smallest unpadded value otherwise. Air noise below −1024 HU is raised to −1000 HU
too and counted in ``padded``. A forward model fed −3000 HU would integrate negative attenuation;
``padding="keep"`` returns the values as stored.

A folder is read as one series; its slices
are sorted along the slice normal ``n = row_cosines × column_cosines`` (from
``ImageOrientationPatient``) by ``n · ImagePositionPatient``, or by ``InstanceNumber`` when
positions are absent. Files that are not DICOM are skipped; a folder holding several series is
an error that lists them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from medrecon import MedreconError

__all__ = ["DicomVolume", "read_dicom", "CT_AIR_HU", "CT_MIN_HU"]

PathLike = Union[str, "os.PathLike[str]"]
CT_AIR_HU = -1000.0  # air by the definition of the Hounsfield scale (μ = 0)
CT_MIN_HU = -1024.0  # the bottom of the 12-bit CT number range; lower values mark padding
PADDING_MODES = ("air", "keep")


@dataclass
class DicomVolume:
    """``volume``: float32 ``[S, H, W]`` physical values (HU for CT); ``pixel_spacing``: (row, column) mm;
    ``slice_spacing``: mm between sorted slices (``SliceThickness`` for one slice, ``None`` if unknown);
    ``modality``: the DICOM Modality (``"CT"``, ``"MR"``, …); ``rescaled``: whether a rescale slope/intercept was present;
    ``padded``: how many pixels were padding and were set to air (module docstring)."""

    volume: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: Optional[float]
    modality: str
    rescaled: bool
    files: list[Path]
    padded: int = 0


def _dcmread(path: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, EOFError) as err:
        raise MedreconError(f"{path}: not a readable DICOM file ({err})") from None


def _stored_value(ds, value) -> float:
    """A padding tag's value in the pixels' signedness: some writers store −2000 as US 63536 while
    ``PixelRepresentation`` = 1 (signed pixels)."""
    v = float(value)
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    if int(getattr(ds, "PixelRepresentation", 0) or 0) == 1 and v >= 2 ** (bits - 1):
        v -= 2**bits
    return v


def _padding_mask(ds, stored: np.ndarray) -> np.ndarray:
    """Pixels whose stored value is ``PixelPaddingValue`` or lies between it and ``PixelPaddingRangeLimit``."""
    value = getattr(ds, "PixelPaddingValue", None)
    if value is None:
        return np.zeros(stored.shape, bool)
    limit = getattr(ds, "PixelPaddingRangeLimit", None)
    if limit is None:
        return stored == _stored_value(ds, value)
    lo, hi = sorted((_stored_value(ds, value), _stored_value(ds, limit)))
    return (stored >= lo) & (stored <= hi)


def _pixels(ds, path: Path, padding: str = "air") -> tuple[np.ndarray, bool, int]:
    """Physical values of one dataset, whether a rescale was present, and the count of padded pixels."""
    try:
        arr = ds.pixel_array.astype(np.float32)
    except Exception as err:  # pydicom raises many types for missing/compressed pixel data
        raise MedreconError(f"{path}: cannot decode the DICOM pixel data ({err})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and getattr(ds, "SamplesPerPixel", 1) > 1:
        arr = arr[..., :3].mean(axis=-1)
    pad = _padding_mask(ds, arr) if padding == "air" else None
    slope = getattr(ds, "RescaleSlope", None)
    intercept = getattr(ds, "RescaleIntercept", None)
    rescaled = slope is not None or intercept is not None
    arr = arr * float(slope if slope is not None else 1.0) + float(intercept if intercept is not None else 0.0)
    if pad is None:
        return arr, rescaled, 0
    if str(getattr(ds, "Modality", "")) == "CT" and rescaled:
        pad |= arr < CT_MIN_HU
        air = CT_AIR_HU
    else:
        air = float(arr[~pad].min()) if (~pad).any() else 0.0
    count = int(pad.sum())
    if count:
        arr[pad] = air
    return arr, rescaled, count


def _position(ds) -> Optional[float]:
    pos = getattr(ds, "ImagePositionPatient", None)
    ori = getattr(ds, "ImageOrientationPatient", None)
    if pos is None:
        return None
    normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float)) if ori is not None else np.array([0.0, 0.0, 1.0])
    return float(np.dot(normal, np.asarray(pos, float)))


def read_dicom(path: PathLike, padding: str = "air") -> DicomVolume:
    """Read a DICOM file (→ ``[1, H, W]``, or ``[F, H, W]`` for a multi-frame file) or a series folder;
    ``padding`` = ``"air"`` (default) or ``"keep"`` (module docstring)."""
    if padding not in PADDING_MODES:
        raise MedreconError(f"padding must be one of {PADDING_MODES}, received {padding!r}")
    p = Path(path)
    if not p.exists():
        raise MedreconError(f"{p}: no such file or folder")
    if p.is_file():
        ds = _dcmread(p)
        arr, rescaled, padded = _pixels(ds, p, padding)
        vol = arr[None] if arr.ndim == 2 else arr
        thickness = getattr(ds, "SliceThickness", None)
        return DicomVolume(vol.astype(np.float32), _spacing(ds), float(thickness) if thickness else None,
                           str(getattr(ds, "Modality", "")), rescaled, [p], padded)

    headers = []
    for f in sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")):
        try:
            headers.append((f, _dcmread(f, stop_before_pixels=True)))
        except MedreconError:
            continue
    if not headers:
        raise MedreconError(f"{p}: the folder holds no DICOM files")
    series = {str(getattr(h, "SeriesInstanceUID", "")) for _, h in headers}
    if len(series) > 1:
        raise MedreconError(f"{p}: the folder holds {len(series)} DICOM series ({', '.join(sorted(series)[:4])}); pass one series folder")
    positions = [_position(h) for _, h in headers]
    if all(v is not None for v in positions):
        order = np.argsort(positions, kind="stable")
    else:
        order = np.argsort([int(getattr(h, "InstanceNumber", i)) for i, (_, h) in enumerate(headers)], kind="stable")
    files = [headers[i][0] for i in order]
    slices, flags, padded = [], [], 0
    for f in files:
        arr, rescaled, count = _pixels(_dcmread(f), f, padding)
        padded += count
        if slices and arr.shape != slices[0].shape:
            raise MedreconError(f"{f}: slice of size {arr.shape} differs from the series' {slices[0].shape}")
        slices.append(arr)
        flags.append(rescaled)
    first = headers[order[0]][1]
    spacing = None
    if len(files) > 1 and all(v is not None for v in positions):
        sorted_pos = np.sort(np.asarray(positions, float))
        spacing = float(np.median(np.diff(sorted_pos)))
    elif getattr(first, "SliceThickness", None):
        spacing = float(first.SliceThickness)
    return DicomVolume(np.stack(slices).astype(np.float32), _spacing(first), spacing,
                       str(getattr(first, "Modality", "")), all(flags), files, padded)


def _spacing(ds) -> tuple[float, float]:
    ps = getattr(ds, "PixelSpacing", None)
    if ps is None:
        return (1.0, 1.0)
    return (float(ps[0]), float(ps[1]))
