"""The reconstruction pipeline behind ``medrecon recon``: file → operator + measurement → scale →
method → unscale → file.

1. **Load** (:func:`load_problem`). A fastMRI file (dataset ``kspace``) becomes a Cartesian MRI
   problem: the sampling mask is the file's ``mask`` (test files), or the sampled columns of the
   k-space, or — for fully sampled k-space — a fastMRI mask generated with ``acceleration`` /
   ``center_fraction`` / ``mask_type`` (seeded per file with fastMRI's ``tuple(map(ord, name))`` so
   every slice shares it). Multi-coil files get ESPIRiT maps (:func:`physics.coils.espirit`) from
   the k-space's fully sampled centre. A sinogram file (dataset ``sinogram``,
   :mod:`medrecon.io.sinogram`) becomes a ``physics.Radon`` problem in HU; with a dose (the file's
   ``dose`` attribute or ``dose=``) its data term is weighted by each bin's Poisson noise
   (:func:`weight_by_dose`, PWLS).
2. **Scale** (diffusion methods only; classical methods choose scale-aware weights themselves).
   A prior sees ``x_n = (x − o)/s`` with ``(o, s)`` from its manifest's ``value_scaling``
   (:func:`medrecon.priors.fit_scaling`). The operator is linear, so the measurement of ``x_n`` is
   ``y_n = (y − o·A𝟙)/s``, with ``A𝟙`` the measurement of the all-ones image:

   * MRI (``percentile`` scaling, ``o = 0``): ``s`` = 99.5th percentile of ``|x₀|`` with ``x₀`` the
     zero-filled (``Aᴴy``) image, the normalisation the prior was trained with; ``y_n = y/s``.
   * CT (``hu_window`` scaling): ``unit = (HU − lo)/(hi − lo)``, i.e. ``o = lo``, ``s = hi − lo``,
     so ``y_unit = (y_HU − lo·R𝟙)/(hi − lo)`` where ``R𝟙`` is the projection of the all-ones image
     over the image square.

   The measurement noise level scales as ``σ_n = σ/s``. After sampling ``x = s·x_n + o``.
3. **Method**: a classical baseline (:mod:`medrecon.baselines`) or a sampler
   (``medrecon.samplers.run``) with a prior (``medrecon.priors.load``).
4. **Write**: MRI → magnitude centre-cropped as fastMRI does (recon size, narrow-FLAIR rule),
   float32 ``[S, h, w]``; CT → HU ``[S, N, N]``. ``.h5`` outputs use the leaderboard layout
   (dataset ``reconstruction``), ``.nii``/``.nii.gz`` NIfTI (:func:`medrecon.io.write_nifti`).
   All writes are atomic.

:func:`reconstruct_directory` runs every ``.h5`` file of a folder, skipping files whose output
exists, sharded over ``torch.distributed`` ranks (rank ``r`` of ``W`` takes ``files[r::W]``), and
keeps a JSON log (``medrecon_log.json``) of method, metrics and seconds per file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from medrecon import MedreconError
from medrecon import baselines as _baselines
from medrecon.io.atomic import TMP_PREFIX, atomic_path
from medrecon.io.fastmri import SliceSpec, center_crop, open_h5, read_fastmri, write_reconstruction
from medrecon.io.images import write_nifti
from medrecon.io.sinogram import read_sinogram

__all__ = [
    "MASK_TYPES",
    "Problem",
    "load_problem",
    "resolve_device",
    "is_classical",
    "reconstruct",
    "reconstruct_file",
    "reconstruct_directory",
    "output_path",
    "LOG_NAME",
]

MASK_TYPES = ("equispaced_fraction", "equispaced", "random", "gaussian_1d")
LOG_NAME = "medrecon_log.json"
DEFAULT_ACCELERATION = 4.0
DEFAULT_CENTER_FRACTION = 0.08
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Problem:
    """One file's reconstruction problem.

    ``y``: MRI k-space ``[S, coils, H, W]`` complex64 or CT sinogram ``[S, 1, views, detectors]``
    float32; ``operator`` maps images ``[S, 1, H, W]`` to it. ``target``: ground truth in the output
    space (MRI magnitude ``[S, h, w]`` cropped; CT HU ``[S, N, N]``) or ``None``. ``crop``: the MRI
    output crop. ``noise_std``: the measurement noise standard deviation in ``y``'s units (per real
    component) if known, else 0. ``info``: facts for the log (mask, coils, geometry …).
    """

    modality: str
    operator: Any
    y: torch.Tensor
    source: Path
    slices: list[int]
    target: Optional[np.ndarray] = None
    crop: Optional[tuple[int, int]] = None
    noise_std: float = 0.0
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    info: dict = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → ``cuda`` when available (``cuda:LOCAL_RANK`` under torchrun), else ``cpu``; otherwise as given."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise MedreconError(f"unknown device {device!r} ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedreconError(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    return dev


def _file_kind(path: Path) -> str:
    with open_h5(path) as hf:
        if "kspace" in hf:
            return "mri"
        if "sinogram" in hf:
            return "ct"
        keys = ", ".join(sorted(hf.keys())) or "nothing"
    raise MedreconError(f"{path}: no 'kspace' dataset (fastMRI) or 'sinogram' dataset (CT) (found: {keys})")


ESPIRIT_CALIB_MAX = 24  # calibration region cap per dimension, as BART ecalib's default -r 24


def espirit_calibration(mask: np.ndarray, height: int) -> tuple[int, int]:
    """The ESPIRiT calibration region ``(rows, cols)`` for a column mask ``[W]``: every row is sampled
    in the contiguous centre columns, so take up to :data:`ESPIRIT_CALIB_MAX` of each (BART's
    ``ecalib`` detects the fully sampled rectangle the same way). A square ``cols × cols`` block would
    leave most of the band unused: on the benchmark's held-out 8× multi-coil slices at 128² (13
    centre columns) the mean map error ``1 − |⟨S, S_true⟩|`` fell from 0.0014 (13 × 13) to 0.0003
    (32 × 13); ``tests/physics/test_coils.py`` checks a 2× improvement (17× measured) at 64²."""
    return min(ESPIRIT_CALIB_MAX, int(height)), min(ESPIRIT_CALIB_MAX, _center_lines(mask))


def _center_lines(mask: np.ndarray) -> int:
    """Number of contiguous sampled columns around the centre column ``W // 2``."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    w, c = mask.shape[0], mask.shape[0] // 2
    if not mask[c]:
        return 0
    lo = c
    while lo > 0 and mask[lo - 1]:
        lo -= 1
    hi = c
    while hi < w - 1 and mask[hi + 1]:
        hi += 1
    return hi - lo + 1


def _mri_problem(
    path: Path, slices: SliceSpec, acceleration: Optional[float], center_fraction: Optional[float],
    mask_type: str, seed: Optional[int], device: torch.device,
) -> Problem:
    import physics
    from physics import masks as pmasks

    vol = read_fastmri(path, slices)
    k = vol.kspace  # [S, C, H, W]
    h, w = k.shape[-2:]
    info: dict[str, Any] = {"modality": "mri", "coils": int(k.shape[1]), "multicoil": vol.multicoil, "kspace_shape": list(k.shape)}
    sampled = np.abs(k).reshape(-1, w).max(axis=0) > 0
    left, right = max(0, vol.header.padding_left), min(w, vol.header.padding_right)
    acquired = np.zeros(w, bool)
    acquired[left:right] = True
    if right <= left:  # a header without usable limits: everything counts as acquirable
        acquired[:] = True
    fully_sampled = bool(sampled[acquired].all())
    if vol.mask is not None:
        mask = vol.mask.copy()
        info["mask"] = "from file"
        if acceleration is not None:
            raise MedreconError(f"{path}: the file has a 'mask' (already undersampled); --acceleration only applies to fully sampled k-space")
    elif fully_sampled:
        acc = DEFAULT_ACCELERATION if acceleration is None else float(acceleration)
        cf = DEFAULT_CENTER_FRACTION if center_fraction is None else float(center_fraction)
        if mask_type not in MASK_TYPES:
            raise MedreconError(f"unknown mask type {mask_type!r}; expected one of {', '.join(MASK_TYPES)}")
        mseed = tuple(map(ord, path.name)) if seed is None else int(seed)
        try:
            mask = getattr(pmasks, mask_type)(w, acc, cf, seed=mseed).numpy().astype(bool)
        except ValueError as err:
            raise MedreconError(f"{path}: cannot make a {mask_type} mask of width {w}: {err}") from None
        mask &= acquired | ~acquired.any()
        k = k * mask
        info["mask"] = f"generated {mask_type} {acc:g}x, center fraction {cf:g}"
    else:
        if acceleration is not None:
            raise MedreconError(f"{path}: the k-space is already undersampled; --acceleration only applies to fully sampled k-space")
        mask = sampled
        info["mask"] = "sampled columns of the k-space"
    info["acceleration"] = round(float(acquired.sum() / max(1, (mask & acquired).sum())), 3)

    y = torch.from_numpy(np.ascontiguousarray(k)).to(device)
    mask_t = torch.from_numpy(mask).to(device)[None]
    if vol.multicoil:
        calib = espirit_calibration(mask, h)
        if calib[1] < 8:
            raise MedreconError(f"{path}: multi-coil k-space needs ≥ 8 fully sampled centre columns for ESPIRiT, found {calib[1]}")
        maps = physics.coils.espirit(y, calib_width=calib, kernel_width=min(6, calib[1] - 1))
        operator = physics.MultiCoilMRI(mask_t, maps)
        info["maps"] = f"ESPIRiT (calibration {calib[0]}×{calib[1]})"
    else:
        operator = physics.SingleCoilMRI(mask_t, shape=(h, w))
    crop = vol.crop_size
    target = vol.target
    if target is not None:
        crop = (int(target.shape[-2]), int(target.shape[-1]))
    fov = vol.header.field_of_view_mm
    rec = vol.header.recon_size
    spacing = (1.0, 1.0, 1.0)
    if fov is not None and rec[0] > 0 and rec[1] > 0:
        spacing = (fov[1] / rec[1], fov[0] / rec[0], fov[2] / max(1, rec[2]))
    noise = float(vol.attrs.get("noise_std", 0.0))
    return Problem("mri", operator, y, path, vol.slices, target, crop, noise, spacing, info)


def radon_operator(
    geometry: str,
    image_size: int,
    angles: Any,
    *,
    detectors: Optional[int] = None,
    detector_spacing: Optional[float] = None,
    source_distance: Optional[float] = None,
    detector_distance: Optional[float] = None,
    detector_type: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
):
    """``physics.Radon`` for a parallel or fan geometry (``detectors=None``: the geometry's default).

    The geometry (angles) stays on the CPU whatever ``device`` is: ``physics.ct`` builds its ray tables
    on the host from the angles and the host-side detector positions and copies them to the input's
    device, so angles on CUDA made every CUDA CT projection fail ("Expected all tensors to be on the
    same device, cuda:0 and cpu"). ``device`` is accepted for symmetry with the MRI operators; the
    operator itself computes on the device of what it is applied to.
    """
    import physics

    del device  # the operator follows its input's device; see the docstring
    angles = torch.as_tensor(np.asarray(angles), dtype=torch.float32)
    kw: dict[str, Any] = {"detectors": detectors}
    if detector_spacing is not None:
        kw["detector_spacing"] = detector_spacing
    if geometry == "parallel":
        geom = physics.ParallelBeam(image_size=image_size, angles=angles, **kw)
    elif geometry == "fan":
        geom = physics.FanBeam(image_size=image_size, angles=angles, source_distance=source_distance,
                               detector_distance=detector_distance, detector=detector_type or "equiangular", **kw)
    else:
        raise MedreconError(f"unknown CT geometry {geometry!r}; expected parallel or fan")
    return physics.Radon(geom)


def ct_operator(vol, device: Union[str, torch.device] = "cpu"):
    """The ``physics.Radon`` operator of a :class:`~medrecon.io.SinogramVolume`'s geometry."""
    return radon_operator(
        vol.geometry, vol.image_size, vol.angles, detectors=vol.detectors, detector_spacing=vol.detector_spacing,
        source_distance=vol.source_distance, detector_distance=vol.detector_distance,
        detector_type=vol.detector_type, device=device,
    )


def _ct_problem(path: Path, slices: SliceSpec, device: torch.device, dose: Optional[float] = None) -> Problem:
    vol = read_sinogram(path, slices)
    try:
        operator = ct_operator(vol, device)
    except ValueError as err:
        raise MedreconError(f"{path}: the geometry attributes do not describe a valid {vol.geometry}-beam scan: {err}") from None
    y = torch.from_numpy(np.ascontiguousarray(vol.sinogram))[:, None].to(device)
    if tuple(y.shape[1:]) != tuple(operator.oshape):
        raise MedreconError(f"{path}: 'sinogram' slices are {tuple(y.shape[2:])} but the geometry gives {tuple(operator.oshape[1:])}")
    ps = vol.pixel_size_mm or 1.0
    info = {"modality": "ct", "geometry": vol.geometry, "views": int(y.shape[2]), "detectors": vol.detectors, "image_size": vol.image_size}
    noise = 0.0
    with open_h5(path) as hf:
        noise = float(hf.attrs.get("noise_std", 0.0))
    problem = Problem("ct", operator, y, path, vol.slices, vol.ground_truth, None, noise, (ps, ps, ps), info)
    dose = vol.dose if dose is None else dose
    if dose is None or dose == 0:  # 0: the caller's way to switch the weighting off for a file that has a dose
        return problem
    if not dose > 0:
        raise MedreconError(f"{path}: --dose must be a positive photon count per detector bin (0: unweighted), received {dose:g}")
    if vol.pixel_size_mm is None:
        raise MedreconError(f"{path}: a dose ({dose:g} photons per bin) needs the pixel size (attribute pixel_size_mm) "
                            "to turn the HU·pixel sinogram into attenuation line integrals")
    return weight_by_dose(problem, dose, vol.pixel_size_mm)


def transmission_noise_std(operator, y: torch.Tensor, dose: float, pixel_mm: float) -> torch.Tensor:
    """Per-bin standard deviation of a post-log CT sinogram in medrecon's ``HU·pixel`` units
    (:mod:`medrecon.io.sinogram`), from the sinogram itself and the incident photons per bin ``dose`` = I₀.

    The model is that of ``medrecon simulate ct --dose`` (:mod:`medrecon.io.simulate`): counts
    ``N ~ Poisson(I₀ e^{−p})`` and ``y = 1000·(p̂/(μ_w Δ) − A𝟙)`` with ``p̂ = −ln(N/I₀)``. By the delta
    method ``var p̂ ≈ 1/E[N] = e^{p}/I₀``, so ``σ_i = 1000/(μ_w Δ)·√(e^{p̂_i}/I₀)`` with the measured
    ``p̂_i = μ_w Δ (y_i/1000 + (A𝟙)_i)`` plugged in for ``p`` (the plug-in estimate a scanner's
    statistical reconstruction uses; Thibault et al., Med. Phys. 34:4526, 2007). Bins behind
    more tissue see fewer photons and are noisier: at I₀ = 10⁵ a 20 cm water path (p ≈ 3.8) has 7×
    the standard deviation of a ray through air."""
    from medrecon.io.simulate import MU_WATER_PER_MM

    if not dose > 0:
        raise MedreconError(f"dose must be a positive photon count per detector bin, received {dose}")
    mu_dx = MU_WATER_PER_MM * float(pixel_mm)
    ones = _ones_measurement(operator, y, False).to(y.dtype)
    p_hat = (mu_dx * (y.double() / 1000.0 + ones.double())).clamp_min(0)
    return (1000.0 / mu_dx * torch.sqrt(torch.exp(p_hat) / dose)).to(y.dtype)


def weight_by_dose(problem: Problem, dose: float, pixel_mm: float) -> Problem:
    """The CT ``problem`` with its statistically weighted data term (PWLS): the operator becomes
    ``physics.Weighted(A, σ_ref/σ_i)`` and the sinogram ``(σ_ref/σ_i)·y``, with ``σ_i`` from
    :func:`transmission_noise_std` and ``σ_ref = (mean σ_i⁻²)^{−1/2}``, so the weighted sinogram has
    white noise of standard deviation ``σ_ref`` = the problem's ``noise_std``, and the weights have
    mean square 1 (``AᴴW²A`` keeps the average scale of ``AᴴA``). Every method then fits the bins by
    their reliability instead of one noise level for the whole sinogram. A noise-aware sampler's
    answer does not depend on the choice of ``σ_ref`` (scaling ``w`` and ``σ_ref`` together leaves
    the likelihood unchanged); FBP and the FBP-preconditioned TV see the measured sinogram
    unchanged (``Weighted.fbp``).

    Measured (CPU, 128², ``ddnm`` tuned): ct-par-23 at I₀ = 10⁵ on 10 real pydicom CT slices
    31.41 → 32.17 dB (``benchmarks/RESULTS.md``); the demo's 60-view case at I₀ = 10⁶ 44.17 → 45.73 dB
    (before: one noise level σ_ref for every bin). Methods measured to lose with the weights (``dds``:
    41.69 → 34.13 dB on that case; ``dds``, ``reddiff``, ``dps`` on ct-par-23, ``samplers.WEIGHTED_NOTE``)
    have ``samplers.METHODS[m].weighted`` False, and :func:`reconstruct` gives them the unweighted
    sinogram (:func:`unweighted`); ``dose=0`` reads the file unweighted for every method."""
    import physics

    if problem.modality != "ct":
        raise MedreconError(f"{problem.source}: a dose weights CT sinograms; this is a {problem.modality} problem")
    if isinstance(problem.operator, physics.Weighted):
        raise MedreconError(f"{problem.source}: the problem is already weighted")
    sd = transmission_noise_std(problem.operator, problem.y, dose, pixel_mm)
    sd_ref = float(sd.double().pow(-2).mean().rsqrt())  # mean w² = 1: AᴴW²A keeps AᴴA's average scale
    w = sd_ref / sd
    info = {**problem.info, "dose": float(dose), "data_term": "weighted by the Poisson noise of each bin (PWLS)"}
    return dataclasses.replace(problem, operator=physics.Weighted(problem.operator, w), y=w * problem.y,
                               noise_std=sd_ref, info=info)


def unweighted(operator: Any, y: torch.Tensor, noise_std: float) -> tuple[Any, torch.Tensor, float]:
    """Undo :func:`weight_by_dose` for a method that fits the unweighted data term
    (``samplers.METHODS[m].weighted`` is False): the inner operator, the measured sinogram ``y / w`` and
    one noise level for all bins, the RMS of the per-bin ``σ_i = σ_ref / w_i`` (the convention before
    weighting). ``noise_std`` is the weighted sinogram's ``σ_ref`` (the problem's, or a caller's)."""
    w = operator.weights.reshape((-1,) + tuple(operator.op.oshape)).to(y.device)
    return operator.op, y / w.to(y.dtype), float(noise_std) * float(w.double().pow(-2).mean().sqrt())


def load_problem(
    path: PathLike,
    *,
    slices: SliceSpec = None,
    acceleration: Optional[float] = None,
    center_fraction: Optional[float] = None,
    mask_type: str = "equispaced_fraction",
    mask_seed: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    dose: Optional[float] = None,
) -> Problem:
    """Read ``path`` (fastMRI or sinogram h5) into a :class:`Problem` on ``device`` (module docstring, step 1).
    CT: ``dose`` (photons per bin; default the file's ``dose`` attribute, 0 = none) weights the data
    term by each bin's Poisson noise (:func:`weight_by_dose`)."""
    p = Path(path)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if _file_kind(p) == "mri":
        if dose:
            raise MedreconError(f"{p}: --dose weights CT sinograms; this is an MRI (k-space) file")
        return _mri_problem(p, slices, acceleration, center_fraction, mask_type, mask_seed, dev)
    return _ct_problem(p, slices, dev, dose)


def is_classical(method: str) -> bool:
    return method in _baselines.BASELINES


def _load_prior(prior: Any, problem: Problem):
    from medrecon import priors

    if isinstance(prior, (str, os.PathLike)):
        prior = priors.load(prior)
    want_complex = problem.modality == "mri"
    if bool(getattr(prior, "complex", want_complex)) != want_complex:
        kind = "complex MRI" if want_complex else "real CT"
        raise MedreconError(
            f"{problem.source}: prior {getattr(prior, 'name', prior)!r} has {getattr(prior, 'channels', '?')} channel(s) "
            f"({'complex' if getattr(prior, 'complex', False) else 'real'}) but the data are {kind} images "
            f"(need {'2 channels, complex' if want_complex else '1 channel, real'})"
        )
    return prior


def _ones_measurement(operator, like: torch.Tensor, complex_: bool) -> torch.Tensor:
    dtype = torch.complex64 if complex_ else torch.float32
    ones = torch.ones((like.shape[0], *operator.ishape), dtype=dtype, device=like.device)
    return operator.forward(ones)


_FAST_DENOISERS: dict[tuple, Any] = {}  # (prior name/path, device, mode) → FastDenoiser, reused across files


def reconstruct(
    problem: Problem,
    method: str,
    *,
    prior: Any = None,
    steps: Optional[int] = None,
    seed: int = 0,
    noise_std: Optional[float] = None,
    callback: Optional[Callable[[dict], None]] = None,
    options: Optional[dict] = None,
    fast_network: Union[bool, str] = False,
) -> tuple[np.ndarray, dict]:
    """Run ``method`` on ``problem``; return ``(image, stats)`` with ``image`` in the output space
    (MRI magnitude cropped ``[S, h, w]``, CT HU ``[S, N, N]``; float32 numpy).
    ``options={"samples": K}`` (diffusion): the image is the mean of K posterior samples
    (:func:`medrecon.samplers.run`) and ``stats["pixel_std"]`` their per-pixel standard deviation in the
    image's units (float32 ``[S, h, w]``; for MRI the spread of the complex value).
    ``options={"warm_start": "tv", "t0": T}`` (diffusion): CCDF warm start (Chung, Sim & Ye, CVPR 2022) from
    that classical method's reconstruction of the same data, scaled like the prior's input; the sampler
    runs the last ``T`` ∈ (0, 1] of its schedule from it plus noise at σ(T) (``samplers.run``'s
    ``start_from``/``t0``; ``T`` × the NFE). Measured gains: benchmarks/RESULTS.md.

    ``prior`` (a name, path or loaded :class:`~medrecon.priors.Prior`) is required for diffusion
    methods; ``noise_std`` overrides the problem's measurement noise level (``y``'s units).
    ``fast_network`` runs the prior through :class:`~medrecon.priors.FastDenoiser` on a GPU (no effect
    on the CPU): ``True`` or ``"graphs"`` for bf16 CUDA-graph replay, ``"compile"`` for ``torch.compile``
    + graphs (a one-off compile of about 40 s; then 2.6 ms per 320² evaluation on an H100, 2.7 s per
    1000-NFE slice, against 14.4 s eager).
    """
    options = dict(options or {})
    A, y = problem.operator, problem.y
    stats: dict[str, Any] = {"method": method}
    sigma_y = problem.noise_std if noise_std is None else float(noise_std)
    std: Optional[torch.Tensor] = None  # per-pixel spread of the samples (options["samples"] > 1)
    if is_classical(method):
        if callback is not None and method in ("tv", "l1-wavelet"):
            options.setdefault("callback", callback)
        x = _baselines.run(method, A, y, modality=problem.modality, **options)
    else:
        from medrecon import priors as _priors

        try:
            from medrecon import samplers
        except ImportError as err:
            raise MedreconError(f"diffusion method {method!r} needs medrecon.samplers, which is not available ({err})") from None
        names = list(samplers.available())
        if method not in names:
            raise MedreconError(
                f"unknown method {method!r}; classical: {', '.join(_baselines.available())}; diffusion: {', '.join(names)}"
            )
        if prior is None:
            prior = "mri" if problem.modality == "mri" else "ct"
        if fast_network not in (False, True, "graphs", "compile"):
            raise MedreconError(f"fast_network must be False, True, 'graphs' or 'compile', received {fast_network!r}")
        fast_key = (str(prior), str(y.device), fast_network) if fast_network and isinstance(prior, (str, os.PathLike)) else None
        if fast_key is not None and fast_key in _FAST_DENOISERS:  # a folder run: capture/compile once, not per file
            den = _FAST_DENOISERS[fast_key]
        else:
            den = _load_prior(prior, problem)
            if hasattr(den, "to"):
                den = den.to(y.device)
            if fast_network and not isinstance(den, _priors.FastDenoiser):
                den = _priors.FastDenoiser(den, compile=fast_network == "compile")
                if fast_key is not None:
                    _FAST_DENOISERS.clear()  # keep one: each holds graphs and activation memory
                    _FAST_DENOISERS[fast_key] = den
        stats["network"] = repr(den) if isinstance(den, _priors.FastDenoiser) and y.device.type == "cuda" else "eager"
        import physics

        warm = options.pop("warm_start", None)
        x_warm = None
        if warm is not None:  # CCDF warm start from a classical reconstruction (samplers.run's start_from)
            if not isinstance(warm, str) or not is_classical(warm):
                raise MedreconError(f"warm_start must name a classical method ({', '.join(_baselines.available())}), "
                                    f"received {warm!r}")
            t0 = options.get("t0")
            if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not 0 < t0 <= 1:
                raise MedreconError(f"warm_start needs t0 in (0, 1], the fraction of the noise schedule run from it; "
                                    f"received {t0!r}")
            x_warm = _baselines.run(warm, A, y, modality=problem.modality)
            stats["warm_start"] = warm
        if isinstance(A, physics.Weighted) and not samplers.METHODS[method].weighted:
            A, y, sigma_y = unweighted(A, y, sigma_y)  # measured to lose with the weights: samplers.WEIGHTED_NOTE
            stats["data_term"] = "unweighted"
        x_init = A.adjoint(y) if problem.modality == "mri" else _baselines.fbp(A, y)
        scaling = dict(getattr(den, "manifest", None) or {}).get("value_scaling", {"kind": "none"})
        vs = _priors.fit_scaling(x_init, scaling)
        offset, scale = vs.offset, vs.scale
        y_n = y
        if bool((offset != 0).any()):
            y_n = y_n - offset.reshape(-1, *([1] * (y.ndim - 1))).to(y.dtype) * _ones_measurement(A, y, y.is_complex())
        y_n = y_n / scale.reshape(-1, *([1] * (y.ndim - 1))).to(y_n.real.dtype)
        sigma_n = sigma_y / float(scale.min())  # the noise level is per file; take the tightest slice's
        if x_warm is not None:
            options["start_from"] = _priors.normalize(x_warm.to(x_init.dtype), vs)
        gen = torch.Generator(device=y.device).manual_seed(int(seed))
        kw: dict[str, Any] = {"noise_std": sigma_n, "generator": gen, "callback": callback}
        if steps is not None:
            kw["steps"] = int(steps)
        with torch.no_grad():
            result = samplers.run(method, den, A, y_n, return_stats=True, **kw, **options)
        x_n, sstats = result if isinstance(result, tuple) else (result, {})
        x = _priors.denormalize(x_n, vs)
        std = getattr(sstats, "pixel_std", None)
        if std is not None:  # samples=K: the spread of the K samples, in the image's units
            std = std * scale.reshape(-1, *([1] * (std.ndim - 1))).to(std.device, std.dtype)
        if dataclasses.is_dataclass(sstats):
            sstats = {f.name: getattr(sstats, f.name) for f in dataclasses.fields(sstats)}
        stats.update({k: v for k, v in dict(sstats).items() if isinstance(v, (int, float, str))})
        stats["prior"] = getattr(den, "name", str(prior))
    support = getattr(A, "support", None)
    if support is not None:  # multi-coil: content outside the maps' support is unmeasured (MultiCoilMRI.support)
        x = x * support.to(x.device)
        std = None if std is None else std * support.to(std.device)
        stats["support_fraction"] = round(float(support.float().mean()), 4)
    out = x[:, 0].abs() if problem.modality == "mri" else x[:, 0]
    if std is not None:
        std = std[:, 0]
    if problem.modality == "mri" and problem.crop is not None:
        out = center_crop(out, problem.crop)
        std = None if std is None else center_crop(std, problem.crop)
    if std is not None:
        stats["pixel_std"] = std.detach().float().cpu().numpy()
    return out.detach().float().cpu().numpy(), stats


def output_path(out: PathLike, source: Path) -> Path:
    """Where the reconstruction of ``source`` goes: ``out`` itself if it names a file (``.h5``, ``.nii``,
    ``.nii.gz``), else ``out/<source name>``."""
    o = Path(out)
    name = o.name.lower()
    if not o.is_dir() and (name.endswith(".h5") or name.endswith(".nii") or name.endswith(".nii.gz")):
        return o
    return o / source.name


def write_output(path: Path, image: np.ndarray, problem: Problem, attrs: dict,
                 std: Optional[np.ndarray] = None) -> Path:
    """Write ``image`` ``[S, h, w]`` to ``path`` (``.nii``/``.nii.gz`` → NIfTI, else leaderboard h5), atomically.
    ``std`` (the per-pixel spread of ``samples=K``): dataset ``reconstruction_std`` in the h5, or a
    ``<name>_std.nii.gz`` beside a NIfTI output."""
    name = path.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        if std is not None:
            stem = path.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.name[: -len(".nii")]
            write_nifti(path.with_name(stem + "_std.nii.gz"), std, problem.spacing)
        return write_nifti(path, image, problem.spacing)
    clean = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in attrs.items() if v is not None}
    return write_reconstruction(path, image, clean, extra=None if std is None else {"reconstruction_std": std})


def reconstruct_file(
    path: PathLike,
    out: PathLike,
    method: str,
    *,
    prior: Any = None,
    steps: Optional[int] = None,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    slices: SliceSpec = None,
    acceleration: Optional[float] = None,
    center_fraction: Optional[float] = None,
    mask_type: str = "equispaced_fraction",
    noise_std: Optional[float] = None,
    callback: Optional[Callable[[dict], None]] = None,
    options: Optional[dict] = None,
    fast_network: Union[bool, str] = False,
    dose: Optional[float] = None,
) -> dict:
    """Reconstruct one file and write it (atomically) to :func:`output_path`; return its log entry:
    ``{"input", "output", "method", "seconds", "slices", "metrics" (when ground truth exists), …}``."""
    from medrecon import metrics

    t0 = time.perf_counter()
    problem = load_problem(path, slices=slices, acceleration=acceleration, center_fraction=center_fraction,
                           mask_type=mask_type, device=device, dose=dose)
    image, stats = reconstruct(problem, method, prior=prior, steps=steps, seed=seed, noise_std=noise_std,
                               callback=callback, options=options, fast_network=fast_network)
    dest = output_path(out, problem.source)
    std = stats.pop("pixel_std", None)
    entry: dict[str, Any] = {
        "input": str(problem.source), "output": str(dest), "method": method, "seed": int(seed),
        "steps": steps, "slices": problem.slices, **problem.info, **{k: v for k, v in stats.items() if k != "method"},
    }
    if problem.target is not None:
        target = problem.target
        if target.shape != image.shape:
            target = center_crop(target, image.shape[-2:])
        if problem.modality == "mri":
            entry["metrics"] = metrics.evaluate(target, image)
        else:
            entry["metrics"] = metrics.evaluate(target - target.min(), image - target.min(),
                                                data_range=float(target.max() - target.min()))
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    attrs = {"method": method, "source": str(problem.source), "seed": int(seed), "slices": problem.slices,
             "units": "HU" if problem.modality == "ct" else "magnitude", "prior": entry.get("prior"),
             "steps": steps, "samples": stats.get("samples")}
    write_output(dest, image, problem, attrs, std=std)
    return entry


# -- directories and torchrun ---------------------------------------------------------------------
def _dist() -> tuple[int, int, bool]:
    """(rank, world, initialised-here): joins a torchrun job (gloo) when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return dist.get_rank(), dist.get_world_size(), False


def list_inputs(folder: Path) -> list[Path]:
    """The ``.h5`` files of ``folder`` (sorted by name; temporary ``.tmp-*`` files excluded)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".h5", ".hdf5")
                  and not p.name.startswith(TMP_PREFIX))


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def reconstruct_directory(
    folder: PathLike,
    out: PathLike,
    method: str,
    *,
    progress: Optional[Callable[[Sequence[Path]], Any]] = None,
    on_error: Optional[Callable[[Path, str], None]] = None,
    suffix: str = "",
    **kwargs: Any,
) -> dict:
    """Reconstruct every ``.h5`` file of ``folder`` into ``out/`` (same names; ``suffix`` e.g. ``".nii.gz"``
    replaces ``.h5``), skipping finished outputs; shard across torchrun ranks; keep ``out/medrecon_log.json``.

    Returns the merged log ``{"files": {name: entry}}`` (on every rank after a barrier). Entries have
    ``"status"``: ``"done"``, ``"skipped"`` (output existed) or ``"error"`` (with ``"error"``).
    ``progress`` wraps the rank's file list (e.g. ``tqdm``); ``on_error(file, message)`` is told of failures.
    """
    src, dst = Path(folder), Path(out)
    if not src.is_dir():
        raise MedreconError(f"{src}: not a folder")
    if dst.exists() and not dst.is_dir():
        raise MedreconError(f"{dst}: --out must be a folder when the input is a folder")
    dst.mkdir(parents=True, exist_ok=True)
    rank, world, owned = _dist()
    files = list_inputs(src)
    mine = files[rank::world]
    part_path = dst / f".medrecon_log.rank{rank}.json"
    entries: dict[str, dict] = {}
    for f in (progress(mine) if progress is not None else mine):
        target = dst / (f.stem + suffix if suffix else f.name)
        if target.exists():
            entries[f.name] = {"status": "skipped", "input": str(f), "output": str(target), "rank": rank}
        else:
            try:
                entry = reconstruct_file(f, target, method, **kwargs)
                entries[f.name] = {"status": "done", "rank": rank, **entry}
            except MedreconError as err:
                entries[f.name] = {"status": "error", "input": str(f), "error": str(err), "rank": rank}
                if on_error is not None:
                    on_error(f, str(err))
        _write_json(part_path, entries)
    _write_json(part_path, entries)

    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    log_path = dst / LOG_NAME
    merged: dict[str, Any] = {"files": {}}
    if rank == 0:
        if log_path.exists():
            try:
                merged = json.loads(log_path.read_text())
                merged.setdefault("files", {})
            except json.JSONDecodeError:
                merged = {"files": {}}
        for r in range(world):
            part = dst / f".medrecon_log.rank{r}.json"
            if part.exists():
                for name, e in json.loads(part.read_text()).items():
                    if e["status"] == "skipped" and merged["files"].get(name, {}).get("status") == "done":
                        continue  # keep the entry of the run that made the file
                    merged["files"][name] = e
                part.unlink()
        merged["method"] = method
        _write_json(log_path, merged)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank != 0:
            merged = json.loads(log_path.read_text())
        if owned:
            dist.destroy_process_group()
    return merged
