"""Realistic measurement files made from an image: ``medrecon simulate mri|ct``.

**MRI** (:func:`simulate_mri`) writes a fastMRI-layout file (:mod:`medrecon.io.fastmri`):

1. the image magnitude is normalised so its 99.5th percentile is 1 (the MRI prior normalisation,
   ``medrecon.data.MRI_SCALING``) and given a smooth random phase
   ``φ(r) = phase · (a·u + b·v + c·(u² + v²))`` (``u, v ∈ [−1, 1]``, ``a, b, c ~ U(−1, 1)``, seeded);
2. coil images ``S_c·x`` with birdcage maps (:func:`physics.coils.birdcage`, ``Σ_c |S_c|² = 1``;
   ``coils = 1`` means single-coil, ``S = 1``), k-space ``fft2c`` (centred, orthonormal);
3. complex white noise of standard deviation ``noise`` per real component on every k-space sample
   (``medrecon.noise.randn_like``), then a fastMRI column mask (``mask_type``, ``acceleration``,
   ``center_fraction``; one mask for all slices, seeded) zeroes the unsampled columns
   (``acceleration = 1``: fully sampled, no ``mask`` dataset, like a fastMRI train file).

Stored: ``kspace`` (undersampled), ``mask`` with attrs ``acceleration``/``num_low_frequency``,
``reconstruction_esc`` (single-coil) or ``reconstruction_rss`` (multi-coil) = the **noiseless**
ground-truth magnitude (RSS of the noiseless coil images), ``ground_truth`` (the complex image),
attrs ``noise_std``, ``acquisition = "SIMULATED"``, ``patient_id`` (the image's file stem).

**CT** (:func:`simulate_ct`) writes a sinogram file (:mod:`medrecon.io.sinogram`): the image in HU
(DICOM CT in HU with padding read as air, :mod:`medrecon.io.dicom`; other inputs in the prior's unit window are mapped with
``medrecon.data.unit_to_hu``), projected with ``physics.Radon`` over ``views`` angles
(parallel: ``[0, π)``; fan: ``[0, 2π)``). Noise, optional:

* ``dose = I₀`` photons per detector bin (Beer–Lambert + Poisson): with ``μ = μ_water(1 + HU/1000)``
  (``μ_water = 0.0192 /mm`` at ~70 keV) the attenuation line integral is
  ``p = μ_water·Δ·(R(HU)/1000 + R𝟙)`` (Δ the pixel size in mm); counts ``N ~ Poisson(I₀ e^{−p})``
  (floored at 1) give ``p̂ = −ln(N/I₀)`` and the stored sinogram ``1000·(p̂/(μ_water·Δ) − R𝟙)``.
  The file records ``dose``, so ``medrecon recon`` weights each bin by its noise (PWLS,
  ``medrecon.recon.weight_by_dose``); not when ``noise`` adds Gaussian noise on top (another model).
  Poisson draws use ``torch.poisson`` with the explicit generator.
* ``noise = σ``: Gaussian noise of standard deviation ``σ·max|R(HU)|`` per bin.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from medrecon import MedreconError
from medrecon.io.fastmri import write_fastmri
from medrecon.io.images import LoadedImage, read_image
from medrecon.io.sinogram import SinogramVolume, write_sinogram

__all__ = ["simulate_mri", "simulate_ct", "prepare_image", "MU_WATER_PER_MM"]

PathLike = Union[str, "os.PathLike[str]"]
MU_WATER_PER_MM = 0.0192


def _select(img: LoadedImage, slices: Optional[list[int]]) -> np.ndarray:
    vol = img.volume
    if slices is None:
        return vol[[vol.shape[0] // 2]]
    for i in slices:
        if not -vol.shape[0] <= i < vol.shape[0]:
            raise MedreconError(f"slice {i} is out of range for an image volume of {vol.shape[0]} slices")
    return vol[list(slices)]


def prepare_image(path: PathLike, *, slices: Optional[list[int]] = None, size: Optional[int] = None,
                  square: bool = False) -> tuple[np.ndarray, LoadedImage]:
    """Read ``path`` and return float32 ``[S, H, W]`` (default: the middle slice) with even sizes;
    ``square`` centre-crops to a square, ``size`` resizes to ``size × size`` (anti-aliased)."""
    img = read_image(path)
    vol = _select(img, slices)
    if not np.isfinite(vol).all():
        raise MedreconError(f"{path}: the image contains NaN or Inf values")
    if square or size is not None:
        n = min(vol.shape[-2:])
        top, left = (vol.shape[-2] - n) // 2, (vol.shape[-1] - n) // 2
        vol = vol[:, top : top + n, left : left + n]
    if size is not None and vol.shape[-1] != size:
        from skimage.transform import resize

        vol = np.stack([resize(v, (size, size), anti_aliasing=True, preserve_range=True) for v in vol]).astype(np.float32)
    h, w = vol.shape[-2] // 2 * 2, vol.shape[-1] // 2 * 2
    if h < 16 or w < 16:
        raise MedreconError(f"{path}: the image is too small ({vol.shape[-2]}x{vol.shape[-1]}); need at least 16x16")
    return np.ascontiguousarray(vol[:, :h, :w], dtype=np.float32), img


def _smooth_phase(s: int, h: int, w: int, amplitude: float, gen: torch.Generator) -> torch.Tensor:
    u = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    v = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    coef = torch.rand((s, 3), generator=gen, dtype=torch.float64) * 2 - 1
    phase = amplitude * (coef[:, 0, None, None] * u + coef[:, 1, None, None] * v + coef[:, 2, None, None] * (u**2 + v**2))
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def simulate_mri(
    image: PathLike,
    out: PathLike,
    *,
    coils: int = 1,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    mask_type: str = "equispaced_fraction",
    noise: float = 0.0,
    phase: float = 0.5,
    seed: int = 0,
    slices: Optional[list[int]] = None,
    size: Optional[int] = None,
) -> Path:
    """Write a fastMRI-layout file simulated from ``image`` (module docstring); return its path."""
    import physics
    from physics import coils as pcoils
    from physics import masks as pmasks

    from medrecon.noise import randn_like

    if coils < 1:
        raise MedreconError(f"--coils must be ≥ 1 (1 = single-coil), received {coils}")
    if noise < 0:
        raise MedreconError(f"--noise must be ≥ 0, received {noise}")
    vol, img = prepare_image(image, slices=slices, size=size)
    s, h, w = vol.shape
    gen = torch.Generator().manual_seed(int(seed))
    mag = torch.from_numpy(np.abs(vol))
    level = torch.quantile(mag.reshape(s, -1), 0.995, dim=1).clamp_min(1e-12)
    x = (mag / level[:, None, None]).to(torch.complex64) * _smooth_phase(s, h, w, phase, gen)  # [S, H, W]
    if coils == 1:
        coil_images = x[:, None]
    else:
        maps = pcoils.birdcage(coils, h, w)
        coil_images = maps * x[:, None]
    kspace = physics.fft2c(coil_images)
    target = physics.coils.rss(coil_images, dim=1)
    if noise > 0:
        kspace = kspace + noise * randn_like(kspace, gen)
    mask = None
    if acceleration > 1:  # acceleration 1: a fully sampled (train-style) file without a mask
        try:
            mask = getattr(pmasks, mask_type)(w, acceleration, center_fraction, seed=int(seed)).numpy().astype(bool)
        except AttributeError:
            raise MedreconError(f"unknown mask type {mask_type!r}; expected one of equispaced_fraction, equispaced, random, gaussian_1d") from None
        except ValueError as err:
            raise MedreconError(f"cannot make a {mask_type} mask of width {w}: {err}") from None
        kspace = kspace * torch.from_numpy(mask)
    k = kspace.numpy()
    if coils == 1:
        k = k[:, 0]
    ps = img.spacing
    attrs = {
        "noise_std": float(noise), "acquisition": "SIMULATED", "patient_id": Path(image).stem,
        "simulated_from": str(image), "seed": int(seed), "coils": int(coils),
    }
    if mask is not None:
        attrs.update(acceleration=float(acceleration), num_low_frequency=int(round(w * center_fraction)), mask_type=mask_type)
    return write_fastmri(out, k, mask=mask, target=target.numpy(), attrs=attrs,
                         field_of_view_mm=(h * ps[0], w * ps[1], 1.0),
                         extra={"ground_truth": x.numpy()})


def _to_hu(vol: np.ndarray, img: LoadedImage, units: str, source: PathLike) -> np.ndarray:
    from medrecon.data import unit_to_hu

    if units == "auto":
        units = "hu" if img.hounsfield or (img.kind in ("npy", "nifti", "dicom") and float(vol.min()) < -500) else "unit"
    if units == "hu":
        return vol
    if units != "unit":
        raise MedreconError(f"--units must be auto, hu or unit, received {units!r}")
    lo, hi = float(vol.min()), float(vol.max())
    if lo < -1e-3 or hi > 1 + 1e-3:  # a PNG is already in [0, 1]; other unit inputs are rescaled to it
        vol = (vol - lo) / max(hi - lo, 1e-12)
    return unit_to_hu(torch.from_numpy(vol)).numpy()


def simulate_ct(
    image: PathLike,
    out: PathLike,
    *,
    views: int = 60,
    geometry: str = "parallel",
    detector: str = "equiangular",
    dose: Optional[float] = None,
    noise: float = 0.0,
    units: str = "auto",
    pixel_size_mm: Optional[float] = None,
    seed: int = 0,
    slices: Optional[list[int]] = None,
    size: Optional[int] = 256,
) -> Path:
    """Write a sinogram file simulated from ``image`` (module docstring); return its path."""
    from medrecon.recon import radon_operator

    if views < 2:
        raise MedreconError(f"--views must be ≥ 2, received {views}")
    if geometry not in ("parallel", "fan"):
        raise MedreconError(f"--geometry must be parallel or fan, received {geometry!r}")
    if dose is not None and not dose > 0:
        raise MedreconError(f"--dose must be a positive photon count, received {dose}")
    vol, img = prepare_image(image, slices=slices, size=size, square=True)
    hu = _to_hu(vol, img, units, image)
    n = hu.shape[-1]
    ps = float(img.spacing[1]) * min(img.volume.shape[-2:]) / n  # the pixel size after crop and resize
    if pixel_size_mm is not None:
        ps = float(pixel_size_mm)
    span = math.pi if geometry == "parallel" else 2 * math.pi
    angles = np.arange(views, dtype=np.float64) * span / views
    src = 2.0 * n if geometry == "fan" else None
    radon = radon_operator(geometry, n, angles, source_distance=src, detector_distance=src,
                           detector_type=detector if geometry == "fan" else None)
    x = torch.from_numpy(hu)[:, None]
    with torch.no_grad():
        sino = radon.forward(x)
        if dose is not None:
            gen = torch.Generator().manual_seed(int(seed))
            r1 = radon.forward(torch.ones_like(x))
            p = MU_WATER_PER_MM * ps * (sino / 1000.0 + r1)
            counts = torch.poisson(dose * torch.exp(-p.double()), generator=gen).clamp_min(1.0)
            p_hat = -torch.log(counts / dose)
            sino = (1000.0 * (p_hat / (MU_WATER_PER_MM * ps) - r1.double())).float()
        if noise > 0:
            from medrecon.noise import randn_like

            gen = torch.Generator().manual_seed(int(seed) + 1)
            sino = sino + noise * sino.abs().amax() * randn_like(sino, gen)
    spec = SinogramVolume(
        sinogram=sino[:, 0].numpy().astype(np.float32), angles=angles, geometry=geometry, image_size=n,
        source_distance=src, detector_distance=src, detector_type=detector if geometry == "fan" else None,
        ground_truth=hu.astype(np.float32), pixel_size_mm=ps, dose=float(dose) if dose is not None and noise == 0 else None,
    )
    return write_sinogram(out, spec)
