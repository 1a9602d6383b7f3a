"""File-backed training sources: fastMRI ``.h5``, NIfTI volumes and DICOM series.

They share the :class:`medrecon.data.Source` interface of the synthetic generators:
``sample(n, size, generator)`` draws ``n`` slices uniformly (with replacement) from all slices of
all files, takes a random ``size × size`` crop of each (zero-padded, centred, along an axis that
is shorter than ``size``), and returns ``[n, 1, size, size]`` on ``source.device``.

Each slice is prepared once, when first drawn, and cached in memory (only drawn slices are ever
read). Preparation:

* **MRI** (fastMRI, NIfTI/DICOM with modality "mri"): a complex image, centre-cropped to the
  reconstruction size where the file has one, then divided by
  :func:`medrecon.data.magnitude_scale` of the *whole* slice (99.5th percentile of the magnitude
  = 1, :data:`medrecon.data.MRI_SCALING`), so crops keep the slice's scale. ``complex64``.
* **CT** (NIfTI/DICOM with modality "ct"): Hounsfield units (DICOM: ``pixel ·
  RescaleSlope + RescaleIntercept``; NIfTI: the stored values after nibabel's ``scl_slope`` /
  ``scl_inter``), mapped by :data:`medrecon.data.CT_SCALING` to [0, 1]. ``float32``.

fastMRI (Zbontar et al., arXiv:1811.08839; layout of ``facebookresearch/fastMRI``):
single-coil ``kspace`` is ``[slices, H, W]`` and the image is ``ifft2c(kspace)`` centre-cropped to
the ``reconstruction_esc`` size (320 × 320 for knee), whose magnitude is ``reconstruction_esc``.
Multi-coil ``kspace`` is ``[slices, coils, H, W]``: ``combine="espirit"`` gives
``Σ_c conj(S_c)·ifft2c(k_c)`` with ESPIRiT maps ``S`` (``physics.coils.espirit`` unless
``coil_maps`` is given), ``combine="rss"`` the root-sum-of-squares magnitude (zero phase), both
centre-cropped to the ``reconstruction_rss`` size.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from medrecon import MedreconError
from medrecon.data import CT_SCALING, MRI_SCALING, Source, as_device, hu_to_unit, normalise_magnitude
from physics.fourier import ifft2c

__all__ = ["FastMRISource", "NiftiSource", "DicomSource", "center_crop", "make_source", "FILE_KINDS"]

PathLike = Union[str, Path]
Paths = Union[PathLike, Sequence[PathLike]]


def _files(paths: Paths, suffixes: Optional[tuple[str, ...]], what: str) -> list[Path]:
    """Expand files and directories (recursively; files with one of ``suffixes``, or all files)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file()
                          and (suffixes is None or "".join(p.suffixes).lower().endswith(suffixes)))
        elif item.is_file():
            out.append(item)
        else:
            raise MedreconError(f"{what}: {item} is neither a file nor a directory")
    if not out:
        raise MedreconError(f"{what}: no files found in {[str(i) for i in items]}")
    return out


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre crop of the last two axes to ``shape`` (fastMRI's ``center_crop`` convention: start
    at ``(H - h) // 2``); an axis already smaller than the target is left as it is."""
    h, w = min(shape[0], x.shape[-2]), min(shape[1], x.shape[-1])
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def _normalise_slice(image: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` complex slice divided by its :func:`medrecon.data.magnitude_scale`."""
    return normalise_magnitude(image[None, None])[0][0, 0].to(torch.complex64)


class _SliceSource(Source):
    """Random slices + random crops over an index of ``(file, slice)`` pairs (module docstring)."""

    def __init__(self, device: Union[str, torch.device], complex_: bool) -> None:
        self.device = as_device(device)
        self.complex = complex_
        self.split = "train"  # recorded in the recipe; with files the split is the files you choose
        self._cache: dict[int, torch.Tensor] = {}

    @abstractmethod
    def __len__(self) -> int:
        """Number of slices over all files."""

    @abstractmethod
    def _load(self, index: int) -> torch.Tensor:
        """Slice ``index`` prepared as the module docstring says: ``[H, W]`` complex64 or float32."""

    def slice(self, index: int) -> torch.Tensor:
        """Prepared slice ``index`` (``[H, W]`` on ``self.device``), read from disk once."""
        if not 0 <= index < len(self):
            raise MedreconError(f"{type(self).__name__}: slice index {index} outside [0, {len(self)})")
        if index not in self._cache:
            self._cache[index] = self._load(index).to(self.device)
        return self._cache[index]

    def _sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        dev = generator.device
        which = torch.randint(0, len(self), (n,), generator=generator, device=dev).tolist()
        where = torch.rand((n, 2), generator=generator, device=dev).tolist()
        out = torch.zeros((n, 1, size, size), device=self.device,
                          dtype=torch.complex64 if self.complex else torch.float32)
        for k, (i, (fy, fx)) in enumerate(zip(which, where)):  # file-backed: one copy per image
            img = self.slice(i)
            (y0, ty, h), (x0, tx, w) = (_window(img.shape[0], size, fy), _window(img.shape[1], size, fx))
            out[k, 0, ty:ty + h, tx:tx + w] = img[y0:y0 + h, x0:x0 + w]
        return out


def _window(length: int, size: int, fraction: float) -> tuple[int, int, int]:
    """(source start, target start, extent): a random crop if ``length >= size``, else centred padding."""
    if length >= size:
        return min(int(fraction * (length - size + 1)), length - size), 0, size
    return 0, (size - length) // 2, length


class FastMRISource(_SliceSource):
    """Complex MRI slices from fastMRI ``.h5`` files (single- or multi-coil; module docstring).

    ``paths``: files or directories (``*.h5``). ``combine``: "espirit" or "rss" for multi-coil.
    ``crop``: reconstruction size ``(h, w)``; default the shape of ``reconstruction_esc`` /
    ``reconstruction_rss`` in the file, else no crop. ``coil_maps``: callable
    ``kspace [1, coils, H, W] -> maps [1, coils, H, W]`` (default ``physics.coils.espirit``).
    """

    def __init__(self, paths: Paths, device: Union[str, torch.device], *, combine: str = "espirit",
                 crop: Optional[tuple[int, int]] = None,
                 coil_maps: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        import h5py

        super().__init__(device, True)
        if combine not in ("espirit", "rss"):
            raise MedreconError(f"FastMRISource: combine must be 'espirit' or 'rss', received {combine!r}")
        self.combine, self.coil_maps = combine, coil_maps
        self.files = _files(paths, (".h5",), "FastMRISource")
        self._index: list[tuple[int, int]] = []
        self._crops: list[Optional[tuple[int, int]]] = []
        self._multicoil: list[bool] = []
        for f, path in enumerate(self.files):
            with h5py.File(path, "r") as h5:
                if "kspace" not in h5:
                    raise MedreconError(f"FastMRISource: {path} has no 'kspace' dataset (keys {list(h5.keys())})")
                shape = h5["kspace"].shape
                if len(shape) not in (3, 4):
                    raise MedreconError(f"FastMRISource: {path} kspace must be [slices, H, W] or "
                                        f"[slices, coils, H, W], received shape {shape}")
                recon = next((h5[k].shape[-2:] for k in ("reconstruction_esc", "reconstruction_rss") if k in h5), None)
            self._multicoil.append(len(shape) == 4)
            self._crops.append(tuple(crop) if crop is not None else (tuple(recon) if recon is not None else None))
            self._index += [(f, s) for s in range(shape[0])]

    def __len__(self) -> int:
        return len(self._index)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"source": "fastmri", "split": self.split, "files": [p.name for p in self.files], "slices": len(self),
                "multicoil": sorted(set(self._multicoil)), "combine": self.combine,
                "crop": sorted({c for c in self._crops if c is not None}), "scaling": MRI_SCALING}

    def _load(self, index: int) -> torch.Tensor:
        import h5py

        f, s = self._index[index]
        with h5py.File(self.files[f], "r") as h5:
            kspace = torch.from_numpy(np.asarray(h5["kspace"][s])).to(torch.complex64)
        if self._multicoil[f]:
            coils = ifft2c(kspace)                                             # [C, H, W]
            if self.combine == "rss":
                image = coils.abs().pow(2).sum(0).sqrt().to(torch.complex64)
            else:
                maps = self._maps(kspace[None])[0]
                if maps.shape != coils.shape:
                    raise MedreconError(f"FastMRISource: coil maps have shape {tuple(maps.shape)}, "
                                        f"expected {tuple(coils.shape)} for {self.files[f]}")
                image = (maps.conj() * coils).sum(0)
        else:
            image = ifft2c(kspace)
        if self._crops[f] is not None:
            image = center_crop(image, self._crops[f])
        return _normalise_slice(image)

    def _maps(self, kspace: torch.Tensor) -> torch.Tensor:
        if self.coil_maps is not None:
            return self.coil_maps(kspace).to(torch.complex64)
        from physics.coils import espirit

        return espirit(kspace).to(torch.complex64)


def _check_modality(modality: str, what: str) -> str:
    if modality not in ("mri", "ct"):
        raise MedreconError(f"{what}: modality must be 'mri' or 'ct', received {modality!r}")
    return modality


def _prepare(array: np.ndarray, modality: str) -> torch.Tensor:
    """A 2-D slice in stored units → the prepared slice (module docstring)."""
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if modality == "ct":
        return hu_to_unit(x).float()
    return _normalise_slice(x.to(torch.complex64))


class NiftiSource(_SliceSource):
    """Slices along ``axis`` of NIfTI volumes (``.nii``/``.nii.gz``), read with nibabel.

    ``modality="mri"``: magnitude images → ``complex64`` (zero phase) normalised per slice;
    ``modality="ct"``: values in HU → :data:`medrecon.data.CT_SCALING`. Each slice is rotated by
    90° (``np.rot90``) so that, for axial RAS volumes, anterior is at the top.
    """

    def __init__(self, paths: Paths, device: Union[str, torch.device], *, modality: str = "mri", axis: int = 2) -> None:
        import nibabel as nib

        self.modality = _check_modality(modality, "NiftiSource")
        super().__init__(device, modality == "mri")
        if axis not in (0, 1, 2):
            raise MedreconError(f"NiftiSource: axis must be 0, 1 or 2, received {axis}")
        self.axis = axis
        self.files = _files(paths, (".nii", ".nii.gz"), "NiftiSource")
        self._images = []
        self._index: list[tuple[int, int]] = []
        for f, path in enumerate(self.files):
            img = nib.load(str(path))
            shape = img.shape
            if len(shape) == 4 and shape[3] == 1:
                shape = shape[:3]
            if len(shape) != 3:
                raise MedreconError(f"NiftiSource: {path} must hold a 3-D volume, received shape {img.shape}")
            self._images.append(img)
            self._index += [(f, s) for s in range(shape[axis])]

    def __len__(self) -> int:
        return len(self._index)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"source": "nifti", "split": self.split, "files": [p.name for p in self.files], "slices": len(self),
                "axis": self.axis, "modality": self.modality,
                "scaling": MRI_SCALING if self.modality == "mri" else CT_SCALING}

    def _load(self, index: int) -> torch.Tensor:
        f, s = self._index[index]
        img = self._images[f]
        sl: list[Any] = [slice(None)] * len(img.shape)
        sl[self.axis] = s
        if len(img.shape) == 4:
            sl[3] = 0
        return _prepare(np.rot90(np.asarray(img.dataobj[tuple(sl)], dtype=np.float32)), self.modality)


class DicomSource(_SliceSource):
    """Slices (frames) of DICOM files, read with pydicom.

    ``paths``: files or directories (every file below is read as DICOM). ``modality``: "ct" or
    "mri"; default from the files' ``Modality`` tag ("CT" → ct, "MR" → mri), which must agree.
    CT: ``HU = pixel·RescaleSlope + RescaleIntercept`` → :data:`medrecon.data.CT_SCALING`;
    MRI: the rescaled pixel values as magnitude → ``complex64`` normalised per slice.
    """

    def __init__(self, paths: Paths, device: Union[str, torch.device], *, modality: Optional[str] = None) -> None:
        import pydicom

        self.files = _files(paths, None, "DicomSource")
        modalities, self._index = set(), []
        for f, path in enumerate(self.files):
            try:
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            except Exception as err:  # pydicom raises several types for non-DICOM input
                raise MedreconError(f"DicomSource: cannot read {path} as DICOM ({err})") from err
            if "Rows" not in ds or "Columns" not in ds:
                raise MedreconError(f"DicomSource: {path} holds no image (no Rows/Columns)")
            tag = str(getattr(ds, "Modality", ""))
            modalities.add({"CT": "ct", "MR": "mri"}.get(tag, tag or "unknown"))
            self._index += [(f, k) for k in range(int(getattr(ds, "NumberOfFrames", 1) or 1))]
        if modality is None:
            if len(modalities) != 1 or not modalities <= {"ct", "mri"}:
                raise MedreconError(f"DicomSource: files must all be CT or all MR (or pass modality=), "
                                    f"found modalities {sorted(modalities)}")
            modality = modalities.pop()
        self.modality = _check_modality(modality, "DicomSource")
        super().__init__(device, self.modality == "mri")

    def __len__(self) -> int:
        return len(self._index)

    @property
    def recipe(self) -> dict[str, Any]:
        return {"source": "dicom", "split": self.split, "files": [p.name for p in self.files], "slices": len(self),
                "modality": self.modality, "scaling": MRI_SCALING if self.modality == "mri" else CT_SCALING}

    def _load(self, index: int) -> torch.Tensor:
        import pydicom

        f, frame = self._index[index]
        ds = pydicom.dcmread(str(self.files[f]))
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
        if pixels.ndim == 3:
            pixels = pixels[frame]
        if pixels.ndim != 2:
            raise MedreconError(f"DicomSource: {self.files[f]} pixel data has shape {pixels.shape}, expected [rows, columns]")
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        return _prepare(pixels * slope + intercept, self.modality)


FILE_KINDS = ("fastmri", "nifti", "dicom")


def make_source(spec: str, device: Union[str, torch.device], split: str = "train") -> Source:
    """File-backed source from ``"KIND:PATH[?key=value&...]"`` (``KIND`` in :data:`FILE_KINDS`).

    Options map to the constructor's keyword arguments: ``fastmri:DIR?combine=rss`` or
    ``crop=320x320``; ``nifti:DIR?modality=ct&axis=2``; ``dicom:DIR?modality=ct``. ``PATH`` may be
    a file or a directory. ``split`` is recorded in the recipe only: with files, the split is the
    set of files you point at.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in FILE_KINDS or not rest:
        raise MedreconError(f"file source spec must be KIND:PATH with KIND in {list(FILE_KINDS)}, received {spec!r}")
    path, _, query = rest.partition("?")
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq:
            raise MedreconError(f"file source option {item!r} in {spec!r} must be key=value")
        options[key] = value
    allowed = {"fastmri": {"combine", "crop"}, "nifti": {"modality", "axis"}, "dicom": {"modality"}}[kind]
    if set(options) - allowed:
        raise MedreconError(f"{kind} source options must be among {sorted(allowed)}, received {sorted(options)}")
    if "crop" in options:
        h, _, w = options["crop"].partition("x")
        options["crop"] = (int(h), int(w or h))
    if "axis" in options:
        options["axis"] = int(options["axis"])
    cls = {"fastmri": FastMRISource, "nifti": NiftiSource, "dicom": DicomSource}[kind]
    source = cls(path, device, **options)
    source.split = split
    return source
