"""fastMRI HDF5 files: read k-space, masks, targets and the ISMRMRD header; write reconstructions.

Layout of a fastMRI file (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated
MRI", 2018, and ``fastmri/data/mri_data.py``):

=======================  ====================================================================
``kspace``               complex64, ``[slices, H, W]`` (single-coil) or ``[slices, coils, H, W]``
                         (multi-coil); H is the readout (frequency-encoding) axis, W the phase
                         encoding axis along which Cartesian undersampling removes columns.
``reconstruction_esc``   float32 ``[slices, 320, 320]`` single-coil target (train/val only)
``reconstruction_rss``   float32 ``[slices, 320, 320]`` multi-coil RSS target (train/val only)
``mask``                 ``[W]`` sampled columns (test files only), with attrs ``acceleration``
                         and ``num_low_frequency``
``ismrmrd_header``       XML bytes: encoded/recon matrix sizes and the encoding limits
attrs                    ``max``, ``norm``, ``acquisition``, ``patient_id``
=======================  ====================================================================

Images are ``ifft2c(kspace)`` (centred orthonormal FFT, :mod:`physics.fourier`) and are cropped to
the recon matrix size exactly as fastMRI does: a centre crop in image space of size
``(recon_x, recon_y)`` starting at ``(N − n) // 2`` on each axis, except that when the image width
is smaller than ``recon_y`` (the narrow AXFLAIR brain volumes, "FLAIR 203") the crop is the square
``(W, W)``.

Reconstructions are written in the leaderboard layout: one file per volume, dataset
``reconstruction``, float32 magnitude ``[slices, 320, 320]``.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import h5py
import numpy as np

from medrecon import MedreconError
from medrecon.io.atomic import atomic_path

__all__ = [
    "ISMRMRD_NAMESPACE",
    "FastMRIHeader",
    "FastMRIVolume",
    "parse_ismrmrd_header",
    "make_ismrmrd_header",
    "crop_size_for",
    "center_crop",
    "read_fastmri",
    "write_fastmri",
    "write_reconstruction",
    "read_reconstruction",
    "open_h5",
    "select_slices",
]

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = ("reconstruction_esc", "reconstruction_rss")
PathLike = Union[str, "os.PathLike[str]"]
SliceSpec = Union[None, slice, Sequence[int]]


@dataclass(frozen=True)
class FastMRIHeader:
    """What fastMRI reads from the ISMRMRD XML header.

    ``encoding_size``/``recon_size`` are ``(x, y, z)`` matrix sizes (x ↔ k-space H, y ↔ W).
    ``padding_left``/``padding_right`` delimit the acquired phase-encoding columns inside the
    zero-padded k-space: ``padding_left = enc_y // 2 − limits.center`` and
    ``padding_right = padding_left + limits.maximum + 1`` (as ``mri_data.py`` computes them).
    """

    encoding_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    field_of_view_mm: Optional[tuple[float, float, float]] = None


def _query(root: ET.Element, path: Sequence[str], source: str) -> str:
    """``root.find(".//ns:a//ns:b…")`` in the ISMRMRD namespace (fastMRI's ``et_query``), with a clear error."""
    ns = {"m": ISMRMRD_NAMESPACE}
    expr = "." + "".join(f"//m:{p}" for p in path)
    node = root.find(expr, ns)
    if node is None or node.text is None:
        raise MedreconError(f"{source}: ismrmrd_header has no element {'/'.join(path)}")
    return node.text


def parse_ismrmrd_header(xml: Union[bytes, str], source: str = "ismrmrd_header") -> FastMRIHeader:
    """Parse the matrix sizes, field of view and phase-encoding limits of an ISMRMRD header."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise MedreconError(f"{source}: ismrmrd_header is not valid XML ({err})") from None

    def ints(*path: str) -> tuple[int, int, int]:
        return tuple(int(_query(root, [*path, a], source)) for a in ("x", "y", "z"))  # type: ignore[return-value]

    enc = ints("encoding", "encodedSpace", "matrixSize")
    rec = ints("encoding", "reconSpace", "matrixSize")
    lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    center = int(_query(root, [*lims, "center"], source))
    maximum = int(_query(root, [*lims, "maximum"], source)) + 1
    padding_left = enc[1] // 2 - center
    fov = None
    try:
        fov = tuple(float(_query(root, ["encoding", "reconSpace", "fieldOfView_mm", a], source)) for a in ("x", "y", "z"))
    except MedreconError:
        pass
    return FastMRIHeader(enc, rec, padding_left, padding_left + maximum, fov)  # type: ignore[arg-type]


def make_ismrmrd_header(
    encoding_size: tuple[int, int, int],
    recon_size: tuple[int, int, int],
    *,
    field_of_view_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    center: Optional[int] = None,
    maximum: Optional[int] = None,
) -> bytes:
    """A minimal ISMRMRD header with the fields :func:`parse_ismrmrd_header` reads (for simulated files).

    ``center``/``maximum`` default to a fully acquired phase-encoding range of ``encoding_size[1]``.
    """
    ny = encoding_size[1]
    center = ny // 2 if center is None else center
    maximum = ny - 1 if maximum is None else maximum

    def xyz(tag: str, v: Sequence[Any]) -> str:
        return f"<{tag}><x>{v[0]}</x><y>{v[1]}</y><z>{v[2]}</z></{tag}>"

    xml = (
        f'<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="{ISMRMRD_NAMESPACE}"><encoding>'
        f"<encodedSpace>{xyz('matrixSize', encoding_size)}{xyz('fieldOfView_mm', field_of_view_mm)}</encodedSpace>"
        f"<reconSpace>{xyz('matrixSize', recon_size)}{xyz('fieldOfView_mm', field_of_view_mm)}</reconSpace>"
        f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum>"
        f"<center>{center}</center></kspace_encoding_step_1></encodingLimits>"
        f"</encoding></ismrmrdHeader>"
    )
    return xml.encode()


def crop_size_for(image_shape: Sequence[int], recon_size: Sequence[int]) -> tuple[int, int]:
    """fastMRI's crop size: ``(recon_x, recon_y)``, or ``(W, W)`` when the image width ``W < recon_y``."""
    width = int(image_shape[-1])
    if width < recon_size[1]:
        return (width, width)
    return (int(recon_size[0]), int(recon_size[1]))


def center_crop(x: Any, shape: Sequence[int]) -> Any:
    """Centre crop of the last two axes to ``shape`` (start ``(N − n) // 2``, as fastMRI's ``center_crop``).

    Works on numpy arrays and torch tensors alike; raises ``MedreconError`` if ``shape`` exceeds the input.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ch, cw = int(shape[0]), int(shape[1])
    if not (0 < ch <= h and 0 < cw <= w):
        raise MedreconError(f"cannot centre-crop an image of size {h}x{w} to {ch}x{cw}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


@dataclass
class FastMRIVolume:
    """The requested slices of a fastMRI file.

    ``kspace``: complex64 ``[S, coils, H, W]`` (``coils = 1`` for single-coil files; ``multicoil``
    says which layout the file had). ``mask``: bool ``[W]`` from the file's ``mask`` dataset, else
    ``None``. ``target``: float32 ``[S, h, w]`` from ``reconstruction_esc``/``_rss`` (``target_key``),
    else ``None``. ``attrs``: the file attributes (``max``, ``norm``, ``acquisition``,
    ``patient_id``, ``acceleration``, ``num_low_frequency`` where present).
    """

    path: Path
    kspace: np.ndarray
    multicoil: bool
    slices: list[int]
    num_slices: int
    header: FastMRIHeader
    mask: Optional[np.ndarray] = None
    target: Optional[np.ndarray] = None
    target_key: Optional[str] = None
    attrs: dict = field(default_factory=dict)

    @property
    def crop_size(self) -> tuple[int, int]:
        """The fastMRI crop of the image (recon size with the narrow-FLAIR rule)."""
        return crop_size_for(self.kspace.shape, self.header.recon_size)

    @property
    def acceleration(self) -> Optional[float]:
        return None if "acceleration" not in self.attrs else float(self.attrs["acceleration"])

    @property
    def num_low_frequency(self) -> Optional[int]:
        return None if "num_low_frequency" not in self.attrs else int(self.attrs["num_low_frequency"])


def open_h5(path: PathLike) -> h5py.File:
    """Open an HDF5 file for reading, turning every failure into a one-line ``MedreconError``."""
    p = Path(path)
    if not p.exists():
        raise MedreconError(f"{p}: no such file")
    if p.is_dir():
        raise MedreconError(f"{p}: is a directory, expected an HDF5 file")
    try:
        is_h5 = h5py.is_hdf5(p)
    except OSError as err:
        raise MedreconError(f"{p}: cannot read ({err})") from None
    if not is_h5:
        raise MedreconError(f"{p}: not an HDF5 file")
    try:
        return h5py.File(p, "r")
    except OSError as err:
        raise MedreconError(f"{p}: cannot open the HDF5 file, truncated or corrupt ({err})") from None


def select_slices(spec: SliceSpec, count: int, source: str) -> list[int]:
    """Sorted unique slice indices from ``None`` (all), a ``slice`` or a sequence of ints (negatives count from the end)."""
    if spec is None:
        return list(range(count))
    if isinstance(spec, slice):
        idx = list(range(count))[spec]
    else:
        idx = []
        for i in spec:
            i = int(i)
            if not -count <= i < count:
                raise MedreconError(f"{source}: slice {i} is out of range for a volume of {count} slices")
            idx.append(i % count)
    idx = sorted(set(idx))
    if not idx:
        raise MedreconError(f"{source}: the slice selection {spec!r} is empty (the volume has {count} slices)")
    return idx


def _read(ds: h5py.Dataset, idx: list[int], source: str) -> np.ndarray:
    try:
        if len(idx) == ds.shape[0] and idx == list(range(ds.shape[0])):
            return ds[()]
        if idx == list(range(idx[0], idx[-1] + 1)):
            return ds[idx[0] : idx[-1] + 1]
        return ds[idx]
    except (OSError, ValueError) as err:
        raise MedreconError(f"{source}: cannot read dataset {ds.name!r}, the file is truncated or corrupt ({err})") from None


def read_fastmri(path: PathLike, slices: SliceSpec = None) -> FastMRIVolume:
    """Read the requested ``slices`` of a fastMRI file (only those are read from disk).

    Raises ``MedreconError`` naming the file for: a missing file, a non-HDF5 or truncated file, no
    ``kspace`` dataset, k-space of the wrong rank (not 3 or 4) or dtype (not complex), NaN/Inf in
    the k-space read, a ``mask`` whose width differs from k-space, or a malformed header.
    """
    p = Path(path)
    with open_h5(p) as hf:
        if "kspace" not in hf:
            raise MedreconError(f"{p}: no 'kspace' dataset (found: {', '.join(sorted(hf.keys())) or 'nothing'})")
        ds = hf["kspace"]
        if not isinstance(ds, h5py.Dataset) or ds.ndim not in (3, 4):
            shape = getattr(ds, "shape", None)
            raise MedreconError(
                f"{p}: 'kspace' must have rank 3 [slices, H, W] or 4 [slices, coils, H, W], received shape {shape}"
            )
        if ds.dtype.kind != "c":
            raise MedreconError(f"{p}: 'kspace' must be complex (complex64), received dtype {ds.dtype}")
        n = ds.shape[0]
        idx = select_slices(slices, n, str(p))
        k = _read(ds, idx, str(p)).astype(np.complex64, copy=False)
        if not np.isfinite(k).all():
            bad = sorted({idx[i] for i in np.argwhere(~np.isfinite(k))[:, 0]})
            raise MedreconError(f"{p}: 'kspace' contains NaN or Inf values (slices {bad[:8]})")
        multicoil = ds.ndim == 4
        if not multicoil:
            k = k[:, None]
        width = k.shape[-1]

        if "ismrmrd_header" in hf:
            raw = hf["ismrmrd_header"][()]
            header = parse_ismrmrd_header(raw, str(p))
        else:  # medrecon-simulated or stripped files: the whole matrix is the recon matrix
            header = FastMRIHeader((k.shape[-2], width, 1), (k.shape[-2], width, 1), 0, width)

        mask = None
        if "mask" in hf:
            mask = np.asarray(hf["mask"][()]).astype(bool).reshape(-1)
            if mask.shape[0] != width:
                raise MedreconError(
                    f"{p}: 'mask' has width {mask.shape[0]} but 'kspace' has {width} columns (shape {ds.shape})"
                )

        target = target_key = None
        for key in TARGET_KEYS:
            if key in hf:
                target_key = key
                target = _read(hf[key], idx, str(p)).astype(np.float32, copy=False)
                break

        attrs = {}
        for key, value in hf.attrs.items():
            attrs[key] = value.decode() if isinstance(value, bytes) else (value.item() if isinstance(value, np.generic) else value)

    return FastMRIVolume(p, k, multicoil, idx, n, header, mask, target, target_key, attrs)


def write_fastmri(
    path: PathLike,
    kspace: np.ndarray,
    *,
    mask: Optional[np.ndarray] = None,
    target: Optional[np.ndarray] = None,
    recon_size: Optional[tuple[int, int]] = None,
    field_of_view_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attrs: Optional[dict] = None,
    extra: Optional[dict[str, np.ndarray]] = None,
) -> Path:
    """Write a fastMRI-layout file atomically.

    ``kspace``: complex ``[S, H, W]`` (single-coil) or ``[S, coils, H, W]``. ``mask``: ``[W]``
    (stored as float32 with ``acceleration``/``num_low_frequency`` attrs to be set by the caller
    through ``attrs``). ``target``: float32 ``[S, h, w]`` stored as ``reconstruction_esc``
    (single-coil) or ``reconstruction_rss`` (multi-coil); ``attrs["max"]`` defaults to its maximum.
    ``extra``: further datasets (e.g. a complex ``ground_truth``).
    """
    kspace = np.asarray(kspace)
    if kspace.ndim not in (3, 4) or kspace.dtype.kind != "c":
        raise MedreconError(f"{path}: kspace must be complex [S, H, W] or [S, coils, H, W], received {kspace.dtype} {kspace.shape}")
    h, w = kspace.shape[-2:]
    rs = recon_size or (h, w)
    header = make_ismrmrd_header((h, w, 1), (rs[0], rs[1], 1), field_of_view_mm=field_of_view_mm)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("kspace", data=kspace.astype(np.complex64))
        hf.create_dataset("ismrmrd_header", data=header)
        if mask is not None:
            hf.create_dataset("mask", data=np.asarray(mask, dtype=np.float32).reshape(-1))
        if target is not None:
            key = "reconstruction_rss" if kspace.ndim == 4 else "reconstruction_esc"
            hf.create_dataset(key, data=np.asarray(target, dtype=np.float32))
            hf.attrs["max"] = float(np.max(target))
            hf.attrs["norm"] = float(np.linalg.norm(target))
        for key, value in (extra or {}).items():
            hf.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            hf.attrs[key] = value
    return Path(path)


def write_reconstruction(path: PathLike, reconstruction: np.ndarray, attrs: Optional[dict] = None,
                         extra: Optional[dict] = None) -> Path:
    """Write a volume in the fastMRI leaderboard layout (dataset ``reconstruction``, float32 ``[S, h, w]``)
    atomically; ``extra`` adds datasets of the same shape beside it (e.g. ``reconstruction_std``)."""
    rec = np.asarray(reconstruction, dtype=np.float32)
    if rec.ndim != 3:
        raise MedreconError(f"{path}: a reconstruction must be [slices, H, W], received shape {rec.shape}")
    extra = {k: np.asarray(v, dtype=np.float32) for k, v in (extra or {}).items()}
    for key, value in extra.items():
        if value.shape != rec.shape:
            raise MedreconError(f"{path}: dataset {key!r} has shape {value.shape}, the reconstruction {rec.shape}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as hf:
        hf.create_dataset("reconstruction", data=rec)
        for key, value in extra.items():
            hf.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            hf.attrs[key] = value
    return Path(path)


def read_reconstruction(path: PathLike) -> tuple[np.ndarray, dict]:
    """Read a leaderboard-layout file: ``(reconstruction [S, h, w] float32, attrs)``."""
    p = Path(path)
    with open_h5(p) as hf:
        if "reconstruction" not in hf:
            raise MedreconError(f"{p}: no 'reconstruction' dataset (found: {', '.join(sorted(hf.keys())) or 'nothing'})")
        rec = _read(hf["reconstruction"], list(range(hf["reconstruction"].shape[0])), str(p)).astype(np.float32)
        attrs = dict(hf.attrs)
    return rec, attrs
