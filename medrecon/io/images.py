"""Plain images and volumes: read DICOM/NIfTI/PNG/NPY inputs, write NIfTI volumes and PNG figures.

NIfTI orientation (documented convention, used both ways): a medrecon volume ``[S, H, W]``
(slice, row, column) is stored as the NIfTI array ``data[i, j, k] = volume[k, j, i]`` — i = column,
j = row, k = slice — with the affine ``diag(dx, dy, dz, 1)`` (``dx`` column spacing, ``dy`` row
spacing, ``dz`` slice spacing, in mm, origin at voxel (0, 0, 0)). No reorientation to patient
axes is attempted: the affine is a pure scaling, so viewers show rows along +y.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from medrecon import MedreconError
from medrecon.io.atomic import atomic_path

__all__ = ["LoadedImage", "read_image", "write_nifti", "read_nifti", "save_figure", "IMAGE_SUFFIXES"]

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_SUFFIXES = (".dcm", ".nii", ".nii.gz", ".png", ".npy")


@dataclass
class LoadedImage:
    """``volume`` float32 ``[S, H, W]``; ``spacing`` (row, column) mm; ``kind`` the source format
    (``"dicom"``, ``"nifti"``, ``"png"``, ``"npy"``); ``hounsfield`` True when the values are HU
    (a DICOM CT with a rescale, or as declared by the caller)."""

    volume: np.ndarray
    spacing: tuple[float, float]
    kind: str
    hounsfield: bool = False
    slice_spacing: Optional[float] = None


def _suffix(p: Path) -> str:
    name = p.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else p.suffix.lower()


def read_image(path: PathLike) -> LoadedImage:
    """Read an image or volume from a DICOM file/folder, NIfTI, PNG (grey or RGB → mean) or ``.npy`` (2-D or 3-D)."""
    p = Path(path)
    if not p.exists():
        raise MedreconError(f"{p}: no such file")
    suffix = _suffix(p)
    if p.is_dir() or suffix in (".dcm", ".ima", ""):
        from medrecon.io.dicom import read_dicom

        d = read_dicom(p)
        return LoadedImage(d.volume, d.pixel_spacing, "dicom", d.rescaled and d.modality == "CT", d.slice_spacing)
    if suffix in (".nii", ".nii.gz"):
        vol, spacing = read_nifti(p)
        return LoadedImage(vol, (spacing[1], spacing[0]), "nifti", False, spacing[2])
    if suffix == ".png":
        import matplotlib.image as mpimg

        try:
            img = np.asarray(mpimg.imread(str(p)), dtype=np.float32)
        except Exception as err:
            raise MedreconError(f"{p}: cannot read the PNG ({err})") from None
        if img.ndim == 3:
            img = img[..., :3].mean(axis=-1)
        return LoadedImage(img[None], (1.0, 1.0), "png")
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise MedreconError(f"{p}: cannot read the .npy array ({err})") from None
        if arr.ndim not in (2, 3) or arr.dtype.kind not in "fiuc":
            raise MedreconError(f"{p}: expected a numeric 2-D [H, W] or 3-D [S, H, W] array, received {arr.dtype} {arr.shape}")
        arr = np.abs(arr) if arr.dtype.kind == "c" else arr
        return LoadedImage((arr[None] if arr.ndim == 2 else arr).astype(np.float32), (1.0, 1.0), "npy")
    raise MedreconError(f"{p}: unsupported image format {suffix!r} (expected one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder)")


def write_nifti(path: PathLike, volume: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Path:
    """Write ``volume`` ``[S, H, W]`` (or ``[H, W]``) as NIfTI-1 atomically; ``spacing = (dx, dy, dz)`` mm (module docstring)."""
    import nibabel as nib

    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise MedreconError(f"{path}: a NIfTI volume must be [S, H, W], received shape {vol.shape}")
    affine = np.diag([float(spacing[0]), float(spacing[1]), float(spacing[2]), 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def read_nifti(path: PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file into ``[S, H, W]`` float32 (inverse of :func:`write_nifti`) and its voxel sizes ``(dx, dy, dz)``."""
    import nibabel as nib

    p = Path(path)
    try:
        img = nib.load(str(p))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors …
        raise MedreconError(f"{p}: cannot read the NIfTI file ({err})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise MedreconError(f"{p}: expected a 2-D or 3-D NIfTI image, received shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3]) + (1.0,) * max(0, 3 - len(img.header.get_zooms()))
    return np.ascontiguousarray(data.transpose(2, 1, 0)), zooms[:3]  # type: ignore[return-value]


def save_figure(
    path: PathLike,
    rows: Sequence[Sequence[tuple[str, np.ndarray]]],
    *,
    title: Optional[str] = None,
    row_labels: Optional[Sequence[str]] = None,
    windows: Optional[Sequence[Optional[tuple[float, float]]]] = None,
) -> Path:
    """A grid of grey-scale panels as a PNG (matplotlib Agg, written atomically).

    ``rows``: per row a list of ``(caption, image [H, W])``. ``windows``: per row an optional
    ``(vmin, vmax)`` display window shared by that row (default: 0 .. the row's first image's max).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.6 * ncols, 2.8 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        window = windows[r] if windows is not None and r < len(windows) else None
        if window is None:
            first = np.asarray(row[0][1])
            window = (float(np.min(first)), float(np.max(first)))
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                caption, img = row[c]
                ax.imshow(np.asarray(img), cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
                ax.set_title(caption, fontsize=8)
        if row_labels is not None and r < len(row_labels):
            axes[r][0].text(-0.05, 0.5, row_labels[r], transform=axes[r][0].transAxes, rotation=90,
                            va="center", ha="right", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=110, format="png")
    plt.close(fig)
    return Path(path)
