"""The MNI152 anatomy that the synthetic brain MRI and head CT generators slice.

Source: the ICBM 2009a nonlinear symmetric MNI152 template shipped inside nilearn
(``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``; Fonov et al.,
NeuroImage 2011), loaded with :func:`nilearn.datasets.load_mni152_template` and friends, never from
the network. The shipped T1 is skull-stripped, so the tissue outside the brain (CSF gap, skull
tables, diploë, scalp fat and skin) is made by the generators from a distance map stored here.

Maps (all ``float32``, layout ``[X, Y, Z]`` in RAS voxel order, isotropic voxels of
``voxel_mm`` millimetres, padded by :data:`PAD_MM` of empty space on every side so the skull and
scalp bands fit inside the volume):

``t1``
    T1 template intensity in [0, 1] (0 outside the brain).
``gm``, ``wm``
    grey / white-matter probability in [0, 1].
``csf``
    ``clip(brain_mask - gm - wm, 0, 1)`` with ``brain_mask = t1 > 0``: ventricles, sulci and the
    CSF that the skull-stripping mask keeps (nilearn ships no CSF map).
``proximity``
    ``max(0, PROXIMITY_MM - d)`` in millimetres, where ``d`` is the Euclidean distance to the
    brain envelope (the brain mask morphologically closed with a :data:`CLOSING_MM` ball; 0 inside). Stored as proximity, not distance, so that zero padding outside the
    volume reads as "far from the brain".

The ``.npz`` written by :func:`export_anatomy` holds the maps quantised to ``uint8`` (the nilearn
files are ``uint8`` already, so ``t1``/``gm``/``wm`` are lossless; ``csf`` is exact up to 1/255 and
``proximity`` is in steps of ``PROXIMITY_MM / 255``) plus ``voxel_mm`` and the source names; it
loads with numpy alone (the GPU training machine has neither nilearn nor nibabel).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from medrecon import MedreconError

__all__ = ["Anatomy", "load_anatomy", "export_anatomy", "MAP_NAMES", "PAD_MM", "PROXIMITY_MM", "CLOSING_MM"]

MAP_NAMES = ("t1", "gm", "wm", "csf", "proximity")
PAD_MM = 26.0          # empty margin added around the template volume on every side
PROXIMITY_MM = 30.0    # distances to the brain beyond this are stored as "far" (proximity 0)
CLOSING_MM = 20.0      # the envelope the skull wraps: the brain mask closed with a ball of this radius
_SOURCE = "nilearn MNI152 ICBM 2009a nonlinear symmetric (T1, GM, WM templates)"
_NPZ_VERSION = 1
_FLOOR = 1.0 / 255.0


@dataclass(frozen=True)
class Anatomy:
    """MNI152 tissue maps, ``float32`` arrays ``[X, Y, Z]`` (RAS voxel order), ``voxel_mm`` isotropic.

    See the module docstring for the meaning and range of each map.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    proximity: np.ndarray
    voxel_mm: float
    source: str = _SOURCE

    def __post_init__(self) -> None:
        shapes = {name: getattr(self, name).shape for name in MAP_NAMES}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 3:
            raise MedreconError(f"Anatomy maps must share one 3-D shape [X, Y, Z], received {shapes}")
        if not self.voxel_mm > 0:
            raise MedreconError(f"Anatomy voxel_mm must be positive, received {self.voxel_mm}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape ``(X, Y, Z)``."""
        return tuple(self.t1.shape)  # type: ignore[return-value]

    def stack(self) -> np.ndarray:
        """All maps as one ``float32`` array ``[len(MAP_NAMES), X, Y, Z]`` in :data:`MAP_NAMES` order."""
        return np.stack([getattr(self, name) for name in MAP_NAMES]).astype(np.float32, copy=False)

    def brain_extent_mm(self) -> np.ndarray:
        """``[3, 2]`` array: per axis (x, y, z) the min and max millimetre coordinate of the brain
        mask (``t1 > 0``), measured from the volume centre (the origin the generators use)."""
        mask = self.t1 > 0
        extent = np.zeros((3, 2), dtype=np.float64)
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.nonzero(mask.any(axis=other))[0]
            centre = (mask.shape[axis] - 1) / 2.0
            extent[axis] = [(idx[0] - centre) * self.voxel_mm, (idx[-1] - centre) * self.voxel_mm]
        return extent


def _from_templates(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, voxel_mm: float) -> Anatomy:
    """Derive CSF and the proximity map from the three templates (values in [0, 1], ``[X, Y, Z]``)."""
    from scipy import ndimage

    pad = int(round(PAD_MM / voxel_mm))
    # Resampled (2 mm) templates carry denormal values outside the brain: zero everything below 1/255.
    t1, gm, wm = (np.pad(np.where(a >= _FLOOR, np.clip(a, 0, 1), 0).astype(np.float32), pad) for a in (t1, gm, wm))
    mask = t1 > 0
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0)
    # Close the mask with a CLOSING_MM ball (dilate, then erode, both by distance thresholds) so the
    # skull wraps the whole brain envelope, not each lobe of a low slice separately.
    dilated = ndimage.distance_transform_edt(~mask, sampling=voxel_mm) <= CLOSING_MM
    envelope = (ndimage.distance_transform_edt(dilated, sampling=voxel_mm) > CLOSING_MM) | mask
    distance = ndimage.distance_transform_edt(~envelope, sampling=voxel_mm)
    proximity = np.clip(PROXIMITY_MM - distance, 0.0, PROXIMITY_MM).astype(np.float32)
    return Anatomy(t1=t1, gm=gm, wm=wm, csf=csf, proximity=proximity, voxel_mm=float(voxel_mm))


def _from_nilearn(resolution_mm: int) -> Anatomy:
    if resolution_mm not in (1, 2):
        raise MedreconError(f"MNI152 resolution must be 1 or 2 mm, received {resolution_mm}")
    from nilearn import datasets

    images = [
        datasets.load_mni152_template(resolution=resolution_mm),
        datasets.load_mni152_gm_template(resolution=resolution_mm),
        datasets.load_mni152_wm_template(resolution=resolution_mm),
    ]
    t1, gm, wm = (np.asarray(img.get_fdata(), dtype=np.float32) for img in images)
    voxel = float(abs(images[0].affine[0, 0]))
    return _from_templates(t1, gm, wm, voxel)


def _scales() -> dict[str, float]:
    """The value each map's ``uint8`` code 255 stands for (module docstring)."""
    return {name: (PROXIMITY_MM if name == "proximity" else 1.0) for name in MAP_NAMES}


def _quantise(a: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(a / scale * 255.0), 0, 255).astype(np.uint8)


def _dequantise(code: np.ndarray, scale: float) -> np.ndarray:
    return code.astype(np.float32) * np.float32(scale / 255.0)


def _codes(anatomy: Anatomy) -> dict[str, np.ndarray]:
    """The ``uint8`` code of every map, as :func:`export_anatomy` stores them."""
    return {name: _quantise(getattr(anatomy, name), scale) for name, scale in _scales().items()}


def _as_stored(anatomy: Anatomy) -> Anatomy:
    """The anatomy exactly as :func:`export_anatomy` stores it and :func:`load_anatomy` reads it back
    (``csf`` and ``proximity`` rounded to 1/255 of their scale), so both loading paths give the same maps
    and the generators the same images."""
    scales = _scales()
    maps = {name: _dequantise(code, scales[name]) for name, code in _codes(anatomy).items()}
    return Anatomy(**maps, voxel_mm=anatomy.voxel_mm, source=anatomy.source)


def export_anatomy(path: Union[str, Path], resolution_mm: int = 1) -> Path:
    """Write the anatomy (from nilearn) to a compressed ``.npz`` readable with numpy alone.

    Keys: one ``uint8`` array per name in :data:`MAP_NAMES` (value = ``map / scale * 255``), the
    per-map ``scale`` (1 for tissue maps, :data:`PROXIMITY_MM` for proximity), ``voxel_mm``,
    ``version`` and ``source``. Written to a temporary file and renamed into place.
    Returns the path written.
    """
    path = Path(path)
    anatomy = _from_nilearn(resolution_mm)
    scales = _scales()
    arrays = _codes(anatomy)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp, **arrays, scales=np.array([scales[n] for n in MAP_NAMES], dtype=np.float64),
        voxel_mm=np.float64(anatomy.voxel_mm), version=np.int64(_NPZ_VERSION),
        source=np.array(anatomy.source),
    )
    tmp.replace(path)
    return path


def _from_npz(path: Path) -> Anatomy:
    if not path.is_file():
        raise MedreconError(f"anatomy file {path} does not exist (write it with data_scripts/export_anatomy.py)")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in (*MAP_NAMES, "scales", "voxel_mm", "version") if k not in data.files]
        if missing:
            raise MedreconError(f"anatomy file {path} lacks keys {missing}; expected {list(MAP_NAMES)} + scales, voxel_mm, version")
        if int(data["version"]) != _NPZ_VERSION:
            raise MedreconError(f"anatomy file {path} has version {int(data['version'])}, expected {_NPZ_VERSION}")
        scales = data["scales"]
        maps = {name: _dequantise(data[name], float(scales[i])) for i, name in enumerate(MAP_NAMES)}
        source = str(data["source"]) if "source" in data.files else _SOURCE
        return Anatomy(**maps, voxel_mm=float(data["voxel_mm"]), source=source)


def load_anatomy(path: Optional[Union[str, Path]] = None, resolution_mm: int = 1) -> Anatomy:
    """Load the MNI152 anatomy: from the ``.npz`` at ``path`` when given (numpy only), else from
    nilearn's shipped templates at ``resolution_mm`` (1 or 2; 2 is 8× smaller, for fast tests).

    Both give the same maps: the nilearn path is rounded as the file stores it (:func:`_as_stored`).
    Before, it was not, and a clone without ``.devdata/mni152.npz`` drew held-out brain slices up to
    1.5 % of the maximum away from the benchmark's (``benchmarks/quality.py`` on mri-sc-4x, slice 0)."""
    if path is not None:
        return _from_npz(Path(path))
    return _as_stored(_from_nilearn(resolution_mm))
