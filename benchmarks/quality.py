"""Quality benchmark: every diffusion sampler and classical baseline on held-out MRI and CT tasks.

``medrecon bench [ARGS]`` runs this script (``python benchmarks/quality.py [ARGS]`` does the same).

Tasks (:data:`TASKS`; images ``size × size``, default 128 — the shipped priors' training size):

* ``mri-sc-4x`` / ``mri-sc-8x``: single-coil Cartesian MRI, fastMRI equispaced-fraction masks
  (4×, centre 0.08; 8×, centre 0.04; one mask, seed 0), complex white k-space noise of
  σ = :data:`MRI_NOISE` per real component (orthonormal centred FFT; images normalised so the
  99.5th percentile of ``|x|`` is 1, so σ is also the image-domain noise level per component).
* ``mri-mc-4x`` / ``mri-mc-8x``: 8 birdcage coils (:func:`physics.coils.birdcage`, ``Σ|S_c|² = 1``),
  the same accelerations and noise, the centre widened to ≥ :data:`MIN_ACS_LINES` lines (the
  equispaced-fraction rule keeps the acceleration); reconstructions use **ESPIRiT maps** estimated
  from the undersampled k-space's fully sampled centre (never the true maps). As in fastMRI's
  multi-coil files (a 640 × 368 acquisition for a 320 × 320 image) the field of view is larger than
  the image: the image is zero-padded to :func:`acquisition_matrix` (readout
  :data:`READOUT_OVERSAMPLING`×, phase encoding :data:`PHASE_OVERSAMPLING`×) before the coils see
  it, the mask has that many columns, and outputs are cropped back to ``N × N``. Without it an image
  that fills its field of view (the real slices) is cut at the edges that the periodic FFT joins:
  ESPIRiT's maps go wrong along them and SENSE falls below zero-filling (measured on 2 ood slices,
  8×, 128²: SENSE 17.8 dB with ESPIRiT maps vs 25.5 dB with the true maps).
* ``ct-par-23`` / ``ct-par-60``: parallel-beam Radon, 23 / 60 views over 180°; ``ct-fan-60``: fan
  beam, 60 views over 360° (source and detector at 2N pixels from the centre, equiangular).
  Detector noise is Beer–Lambert + Poisson at ``I₀`` = :data:`CT_DOSE` photons per bin (the model
  of ``medrecon simulate ct``, :mod:`medrecon.io.simulate`), pixel size :data:`CT_FOV_MM`/N mm. Every
  method fits the data term weighted by each bin's Poisson noise (PWLS,
  :func:`medrecon.recon.weight_by_dose`, the noise estimated from the noisy sinogram itself).

Data (``--data``): ``heldout`` — the synthetic generators' held-out split
(:func:`medrecon.data.make_source` with ``split="heldout"`` and the seeds of
``data_scripts/make_heldout.py``; half brain/head, half body), which the priors never saw; ``ood`` —
the real clinical DICOM slices shipped with pydicom (:func:`ood_files`), deduplicated by pixel
content and cycled through the 8 flips/transpositions to reach ``n`` slices (the number of
distinct images is recorded; each copy gets its own noise draw).

Metrics (:mod:`medrecon.metrics`, fastMRI definitions) per slice, then mean ± std over slices. MRI:
magnitude against ``|x|`` (= RSS of the noiseless coil images), data range = the slice maximum. CT:
HU shifted by the slice minimum, data range = max − min (as ``medrecon recon`` logs it).

Methods: each classical baseline of the modality (:data:`CLASSICAL`) and every sampler of
:data:`medrecon.samplers.METHODS` at its official step count (``--setting official``) and at a
fast count ≤ 100 NFE (``--setting fast``: ``min(official, --fast-steps)`` steps, further reduced
for methods with several evaluations per step, official options and schedule), and, for the methods
that have one, at their validated ≤ 100-NFE preset (``--setting tuned``: ``METHODS[m].tuned``, chosen on
images the benchmark never reports, :data:`medrecon.samplers.TUNED_NOTE`). Every run goes through
:func:`medrecon.recon.reconstruct` (the value scaling of ``medrecon recon``), with a whole task's
``n`` slices as one batch; seconds per slice = batch wall time / n (on CUDA after a synchronise),
peak memory = ``torch.cuda.max_memory_allocated`` on CUDA, else the process's peak RSS (a
high-water mark over the whole process, not per run).

Outputs: ``--json OUT.json`` (raw per-run results, rewritten after every run so an interrupted run
keeps what finished) with a sidecar ``OUT.npz`` (slice 0 of every run, for the figures). Without
``--merge`` the table of this run is written to ``--results`` (default ``benchmarks/RESULTS.md``)
and figures to ``benchmarks/figures/quality_<task>_<data>_<size>.png``; ``--merge A.json B.json …``
builds them from several runs (e.g. a CPU run of the fast settings and a GPU run of the official
ones). ``--rebuild`` regenerates the committed report from ``benchmarks/results_sources.json``, the
run files in merge order and the Notes paragraphs: add a new ``--json`` file there (and what it
showed to its notes), then rebuild. When merged files hold a table's rows computed on different
ground-truth slices, the report keeps the table's majority data fingerprint and lists the other rows
apart (:func:`same_ground_truth`); methods that cannot run on a task (no exact SVD, an image-size
limit: :func:`not_applicable`) are neither scheduled nor listed as "not run". ``--gpu-plan`` is the
preset for one ~200 s GPU session (:data:`GPU_PLAN`).

    python benchmarks/quality.py --tasks mri-sc-4x,ct-par-23 --methods ddnm,dds,classical \\
        --setting fast --n 10 --device cpu --json benchmarks/logs/quality-cpu.json
    python benchmarks/quality.py --gpu-plan --device cuda --json gpu.json
    python benchmarks/quality.py --merge benchmarks/logs/quality-cpu.json gpu.json
    python benchmarks/quality.py --rebuild          # benchmarks/RESULTS.md from results_sources.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import importlib.util
import inspect
import json
import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medrecon import MedreconError, priors  # noqa: E402

MRI_NOISE = 0.01  # k-space noise σ per real component (images at 99.5th percentile 1)
CT_DOSE = 1.0e5  # incident photons per detector bin
CT_FOV_MM = 240.0  # field of view of the held-out CT images (pixel size = CT_FOV_MM / N)
MU_WATER_PER_MM = 0.0192  # as medrecon.io.simulate
COILS = 8
# Multi-coil masks keep ≥ 12 fully sampled centre lines (fastMRI's 8× at W = 368 has 15; 16 would be all of 8× at W = 128): ESPIRiT on the
# 5 lines of centre fraction 0.04 at W = 128 gives maps that zero most of the image (measured: SENSE 8.3 dB PSNR).
MIN_ACS_LINES = 12
READOUT_OVERSAMPLING = 2  # multi-coil: rows of the simulated acquisition per image row (fastMRI: 640 for 320)
PHASE_OVERSAMPLING = 1.25  # multi-coil: columns per image column (fastMRI knee: 368 for 320, 1.15)


def acquisition_matrix(size: int) -> tuple[int, int]:
    """Multi-coil acquisition grid ``(rows, cols)`` for an ``size × size`` image (even sizes, module docstring)."""
    return READOUT_OVERSAMPLING * size, 2 * round(PHASE_OVERSAMPLING * size / 2)
HELDOUT_SEEDS = {"mri-brain": 910001, "mri-body": 910002, "ct-head": 920001, "ct-body": 920002}  # make_heldout.py
HELDOUT_DEFAULT_N = 64  # make_heldout.py --n default
CLASSICAL = {"mri": ("zero-filled", "sense", "l1-wavelet", "tv"), "ct": ("fbp", "tv")}
NFE_PER_STEP = {"langevin": 3, "scoresde": 2, "snips": 5, "song2022": 2}  # measured with the default options
BACKWARD = ("dps", "mcg", "pigdm", "recguide")  # methods that backpropagate through the network at every step
TARGET_ROWS = (("mri-sc-4x", ("l1-wavelet", "tv")), ("mri-mc-8x", ("l1-wavelet", "tv")), ("ct-par-23", ("tv",)))
# Speed of a whole 1000-NFE reconstruction, measured by benchmarks/network_speed.py (not by this script) and
# quoted in RESULTS.md; the logs are committed beside the quality logs.
SPEED_NOTE = (
    "Measured on 2026-11-27 on an NVIDIA H100 80GB HBM3 by `python benchmarks/network_speed.py --prior mri "
    "--size 320 --compile --profile --end-to-end` (`benchmarks/logs/network-speed-h100.md`): the shipped MRI prior, "
    "one 320² single-coil 4× held-out slice, `ddnm` 1000 steps = 1000 NFE, batch 1, through "
    "`medrecon.recon.reconstruct`. Eager fp32: 9.08 ms per evaluation, 14.39 s per slice, 37 % outside the "
    "network. CUDA-graph replay (`medrecon.priors.FastDenoiser`): fp32 6.94 ms, 7.09 s (2 % outside); bf16 "
    "7.10 ms, 7.23 s. `torch.compile` + graphs in bf16 (`FastDenoiser(prior, compile=True)`, `medrecon recon "
    "--fast-network compile`): 2.58 ms per evaluation, **2.72 s per slice with 5 % outside the network: met** "
    "(PSNR 34.24 dB, equal to eager fp32's 34.24 dB; the compiled output differs from fp32 by 1.3e-2 of its "
    "maximum). The compile costs 41.7 s once per process and image shape. Why eager is slow: one evaluation "
    "launches 1011 kernels, and GroupNorm's statistics kernel alone takes 36 % of the GPU time (profile in the "
    "log); compiling fuses the normalisation with its neighbours. On an H200 the same script measured 2.51 ms "
    "per compiled evaluation (`benchmarks/logs/network-speed-h200.md`)."
)


@dataclass(frozen=True)
class Task:
    """One reconstruction task: modality, coils / mask or CT geometry."""

    modality: str
    label: str
    coils: int = 1
    acceleration: float = 0.0
    center_fraction: float = 0.0
    geometry: str = ""
    views: int = 0


TASKS: dict[str, Task] = {
    "mri-sc-4x": Task("mri", "MRI single-coil 4× (equispaced-fraction, centre 0.08)", 1, 4.0, 0.08),
    "mri-sc-8x": Task("mri", "MRI single-coil 8× (equispaced-fraction, centre 0.04)", 1, 8.0, 0.04),
    "mri-mc-4x": Task("mri", f"MRI {COILS}-coil 4× (centre max(0.08, {MIN_ACS_LINES}/N), ESPIRiT maps)", COILS, 4.0, 0.08),
    "mri-mc-8x": Task("mri", f"MRI {COILS}-coil 8× (centre max(0.04, {MIN_ACS_LINES}/N), ESPIRiT maps)", COILS, 8.0, 0.04),
    "ct-par-23": Task("ct", "CT parallel beam, 23 views over 180°", geometry="parallel", views=23),
    "ct-par-60": Task("ct", "CT parallel beam, 60 views over 180°", geometry="parallel", views=60),
    "ct-fan-60": Task("ct", "CT fan beam, 60 views over 360°", geometry="fan", views=60),
}
DATASETS = ("heldout", "ood")

# The one-session GPU preset: (task, data, method) at the official setting, in priority order. `ddnm` runs
# on every target task: without an exact SVD (multi-coil, CT) it now uses the damped pseudo-inverse
# (medrecon/samplers/ddnm.py); its former scalar DDNM⁺ step there measured 9.9 dB (mri-mc-8x) and 20.6 dB
# (ct-par-23) on the CPU at 25 NFE, below zero-filled / FBP.
_TARGET_TASKS = ("mri-sc-4x", "mri-mc-8x", "ct-par-23")
GPU_PLAN: tuple[tuple[str, str, str], ...] = tuple(
    [(t, "heldout", m) for m in ("dds", "ddnm") for t in _TARGET_TASKS]
    + [(t, "heldout", "song2022") for t in _TARGET_TASKS]
    + [(t, "ood", m) for m in ("dds", "ddnm") for t in _TARGET_TASKS]
    + [(t, "ood", "song2022") for t in _TARGET_TASKS]
    + [("mri-sc-4x", "heldout", m) for m in ("ilvr", "ddrm", "reddiff", "pigdm", "dps", "langevin", "scoresde",
                                                 "snips", "mcg", "recguide")]
)
# classical rows of the same slices on the same card (cheap; run first so every GPU table has its reference)
GPU_PLAN_CLASSICAL: tuple[tuple[str, str, str], ...] = (
    ("mri-sc-4x", "heldout", "zero-filled"), ("mri-sc-4x", "heldout", "tv"), ("mri-mc-8x", "heldout", "zero-filled"),
    ("mri-mc-8x", "heldout", "tv"), ("ct-par-23", "heldout", "fbp"), ("ct-par-23", "heldout", "tv"),
)
CLASSICAL_S_ESTIMATE = 5.0  # budget guard: a classical run of 10 slices (CG/PDHG/FISTA; ESPIRiT on the CPU)
SAME_TARGET_RTOL = 2e-3  # merge(): slice-0 truths this close are the same slices (float16 sidecars round at 4.9e-4)
GPU_MS_PER_EVAL = 25.0  # planning estimate, H200, batch 10 at 256² (the brief's figure); refined as runs finish


# -- data ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def ood_files(modality: str) -> tuple[Path, ...]:
    """pydicom's shipped test images of ``modality`` ("ct" or "mri") that decode here, deduplicated
    by pixel content (several files are re-encodings of the same slice), sorted by name."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files

    from medrecon.io.dicom import read_dicom

    want = "CT" if modality == "ct" else "MR"
    seen: set[str] = set()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in sorted(get_testdata_files("*.dcm"), key=lambda p: Path(p).name):
            try:
                if pydicom.dcmread(f, stop_before_pixels=True).get("Modality") != want:
                    continue
                vol = read_dicom(f).volume
            except Exception:  # undecodable transfer syntax (JPEG 2000 without a plugin), truncated file …
                continue
            if vol.ndim != 3 or min(vol.shape[-2:]) < 32:
                continue
            digest = hashlib.sha256(np.ascontiguousarray(vol[0]).tobytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                out.append(Path(f))
    return tuple(out)


def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0…7) flip/transpose of a square image."""
    out = img.T if k >= 4 else img
    return np.ascontiguousarray(np.rot90(out, k % 4))


def _smooth_phase(n: int, size: int, gen: torch.Generator, amplitude: float = 0.5) -> torch.Tensor:
    """``exp(i·amplitude·(a·u + b·v + c·(u² + v²)))`` with ``a, b, c ~ U(−1, 1)`` per image (as ``medrecon simulate mri``)."""
    u = torch.linspace(-1, 1, size)
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    a, b, c = (2 * torch.rand(3, n, 1, 1, generator=gen) - 1).unbind(0)
    return torch.polar(torch.ones(n, size, size), amplitude * (a * uu + b * vv + c * (uu**2 + vv**2)))


def load_images(modality: str, data: str, n: int, size: int, anatomy: Optional[Path],
                offset: int = 0) -> tuple[torch.Tensor, dict]:
    """``n`` ground-truth images ``[n, 1, size, size]`` (MRI complex64 with the 99.5th percentile of
    ``|x|`` = 1; CT float32 HU) and a description of where they came from. Held-out data: images
    ``[offset, offset + k)`` of each of the two sets (``tune_fast.py`` validates on ``offset`` 20; the
    benchmark reports ``offset`` 0)."""
    from medrecon.data import unit_to_hu

    if data == "heldout":
        names = ("mri-brain", "mri-body") if modality == "mri" else ("ct-head", "ct-body")
        counts = ((n + 1) // 2, n // 2)
        parts, used = [], []
        for name, k in zip(names, counts):
            if k == 0:
                continue
            cache = ROOT / ".devdata" / "heldout" / f"heldout_{name}_{size}.npz"
            stop = offset + k
            if cache.is_file() and len(np.load(cache)["images"]) >= stop:
                parts.append(torch.from_numpy(np.load(cache)["images"][offset:stop]))
                used.append(f"{cache.relative_to(ROOT)}[{offset or ''}:{stop}]")
            else:
                from medrecon.data import make_source

                src = make_source(name, "cpu", anatomy_path=anatomy if anatomy and anatomy.is_file() else None,
                                  split="heldout")
                # draw make_heldout.py's default 64 images and keep [offset, stop), so the slices equal its npz
                batch = max(stop, HELDOUT_DEFAULT_N)
                parts.append(src.sample(batch, size, torch.Generator().manual_seed(HELDOUT_SEEDS[name]))[offset:stop])
                used.append(f"make_source({name!r}, split='heldout') seed {HELDOUT_SEEDS[name]}, images {offset}–{stop - 1} of {batch}")
        x = torch.cat(parts)
        if modality == "ct":
            x = unit_to_hu(x.float())
        info = {"source": "; ".join(used), "distinct": int(x.shape[0])}
        return x, info
    if data != "ood":
        raise MedreconError(f"--data must be heldout or ood, received {data!r}")
    from medrecon.io.simulate import prepare_image

    files = ood_files(modality)
    if not files:
        raise MedreconError(f"no decodable pydicom {modality} test image found")
    base = [prepare_image(f, size=size, square=True)[0][0] for f in files]
    imgs = np.stack([_dihedral(base[i % len(base)], (i // len(base)) % 8) for i in range(n)])
    x = torch.from_numpy(imgs)[:, None]
    if modality == "mri":
        mag = x.abs()
        level = torch.quantile(mag.reshape(n, -1), 0.995, dim=1).clamp_min(1e-12)
        x = (mag / level[:, None, None, None]).to(torch.complex64) * _smooth_phase(n, size, torch.Generator().manual_seed(7))[:, None]
    info = {"source": "pydicom test data: " + ", ".join(f.name for f in files) + " (8 flips/transpositions)",
            "distinct": len(files)}
    return x.float() if modality == "ct" else x, info


def make_problem(task: Task, x: torch.Tensor, device: torch.device, seed: int = 0):
    """Simulate the measurement of the ground truth ``x`` for ``task``; return a
    :class:`medrecon.recon.Problem` (target in the output space) and facts for the record."""
    import physics
    from physics import coils as pcoils
    from physics import masks as pmasks

    from medrecon.noise import randn_like
    from medrecon.recon import Problem, espirit_calibration, radon_operator, transmission_noise_std, weight_by_dose

    n, size = x.shape[0], x.shape[-1]
    gen = torch.Generator().manual_seed(seed + 1)
    name = f"<benchmark {task.label}>"
    if task.modality == "mri":
        rows, cols = (size, size) if task.coils == 1 else acquisition_matrix(size)
        cf = task.center_fraction if task.coils == 1 else max(task.center_fraction, MIN_ACS_LINES / cols)
        mask = pmasks.equispaced_fraction(cols, task.acceleration, cf, seed=seed).bool()
        m = mask.to(device)[None]
        if task.coils == 1:
            k = physics.fft2c(x)
        else:
            top, left = (rows - size) // 2, (cols - size) // 2
            x_pad = torch.nn.functional.pad(x, (left, cols - size - left, top, rows - size - top))
            k = physics.fft2c(pcoils.birdcage(task.coils, rows, cols).reshape(1, task.coils, rows, cols) * x_pad)
        k = (k + MRI_NOISE * randn_like(k, gen)) * mask
        y = k.to(device)
        facts: dict[str, Any] = {"mask_lines": int(mask.sum()), "center_fraction": round(cf, 4), "noise_std": MRI_NOISE,
                                 "snr_db": round(10 * math.log10(float(x.abs().pow(2).mean()) / (2 * MRI_NOISE**2)), 1)}
        if task.coils == 1:
            op = physics.SingleCoilMRI(m, shape=(size, size))
        else:
            calib = espirit_calibration(mask.numpy(), rows)
            maps = pcoils.espirit(y, calib_width=calib, kernel_width=max(3, min(6, calib[1] - 2)))
            op = physics.MultiCoilMRI(m, maps)
            facts["espirit_calib"] = f"{calib[0]}×{calib[1]}"
            facts["acquisition"] = f"{rows}×{cols}"
        target = x[:, 0].abs().numpy()
        return Problem("mri", op, y, Path(name), list(range(n)), target, (size, size), MRI_NOISE, info=facts), facts
    span = math.pi if task.geometry == "parallel" else 2 * math.pi
    angles = np.arange(task.views) * span / task.views
    dist = 2.0 * size if task.geometry == "fan" else None
    op = radon_operator(task.geometry, size, angles, source_distance=dist, detector_distance=dist,
                        detector_type="equiangular" if task.geometry == "fan" else None, device=device)
    ps = CT_FOV_MM / size
    xd = x.to(device)
    with torch.no_grad():
        sino = op.forward(xd)
        r1 = op.forward(torch.ones_like(xd))
        p = (MU_WATER_PER_MM * ps * (sino / 1000.0 + r1)).double().clamp_min(0)
        counts = torch.poisson(CT_DOSE * torch.exp(-p).cpu(), generator=gen).to(device).clamp_min(1.0)
        sino_noisy = (1000.0 * (-torch.log(counts / CT_DOSE) / (MU_WATER_PER_MM * ps) - r1.double())).float()
    # the data term weighted by each bin's Poisson noise, estimated from the noisy sinogram (PWLS,
    # medrecon.recon.weight_by_dose); facts: noise_std = the RMS of the true per-bin standard deviations
    # (the data's noise level, as in files before v12), pwls_sigma_ref = the weighted sinogram's
    problem = weight_by_dose(Problem("ct", op, sino_noisy, Path(name), list(range(n)), x[:, 0].numpy()), CT_DOSE, ps)
    sd = float(transmission_noise_std(op, sino, CT_DOSE, ps).double().pow(2).mean().sqrt())  # of the noiseless sinogram
    facts = {"dose": CT_DOSE, "pixel_mm": ps, "noise_std": round(sd, 3), "views": task.views,
             "geometry": task.geometry, "data_term": "pwls", "pwls_sigma_ref": round(problem.noise_std, 3)}
    return dataclasses.replace(problem, info={**problem.info, **facts}), facts


# -- runs ----------------------------------------------------------------------------------------
def slice_metrics(modality: str, target: np.ndarray, pred: np.ndarray) -> dict[str, list[float]]:
    """Per-slice ``{"psnr", "ssim", "nmse"}`` lists (module docstring: ranges and shifts)."""
    from medrecon import metrics

    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "nmse": []}
    for t, p in zip(target, pred):
        if modality == "ct":
            lo = float(t.min())
            m = metrics.evaluate(t - lo, p - lo, data_range=float(t.max() - lo))
        else:
            m = metrics.evaluate(t, p)
        for k in out:
            out[k].append(float(m[k]))
    return out


def fast_steps(method: str, cap: int) -> int:
    """Steps of the fast setting: ``min(official, cap / evaluations-per-step)`` (≤ ``cap`` NFE)."""
    from medrecon.samplers import METHODS

    return max(1, min(METHODS[method].steps, cap // NFE_PER_STEP.get(method, 1)))


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU ({model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


EDM_SIGMA_DISTRIBUTION = [-1.2, 1.2]  # EDM's training noise levels ln σ ~ N(P_mean, P_std²) (Karras et al. 2022)


def prior_facts(names: Iterable[str] = ("mri", "ct")) -> dict[str, dict]:
    """Identity of the shipped priors ``checkpoints/<name>.safetensors``: the sha256 (first 12 hex digits,
    computed from the file), the training steps / device / command's ``--init-from`` of its
    ``checkpoints/<name>.json`` card, so every run records which weights it used."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(names):
        weights, card = ROOT / "checkpoints" / f"{name}.safetensors", ROOT / "checkpoints" / f"{name}.json"
        pair = json.loads(card.read_text()) if card.is_file() and not weights.is_file() else {}
        if pair.get("arch") == "coarse_to_fine":  # a CoarseToFine pair: its file's hash, and both parts listed
            c = pair
            out[name] = {"sha256": hashlib.sha256(card.read_bytes()).hexdigest()[:12], "pair_of": [c["fine"], c["coarse"]],
                         "sigma_switch": c["sigma_switch"]}
            out.update({k: v for k, v in prior_facts((c["fine"], c["coarse"])).items() if k not in out})
            continue
        if not weights.is_file():
            continue
        h = hashlib.sha256()
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        info: dict[str, Any] = {"sha256": h.hexdigest()[:12]}
        if card.is_file():
            c = json.loads(card.read_text())
            cmd = str(c.get("training_command", ""))
            training = c.get("training") or {}
            loss, total, stage = training.get("loss") or {}, c.get("steps") or 0, training.get("init_from")
            while isinstance(stage, dict):  # the lineage of --init-from stages (medrecon.train records it)
                total, stage = total + (stage.get("steps") or 0), stage.get("init_from")
            info.update({"steps": c.get("steps"), "images": training.get("images"),
                         "device": c.get("device"), "params": c.get("params"),
                         "fine_tuned": "--init-from" in cmd, "patch_crops": "--crop-from" in cmd,
                         "steps_in_all": total, "sigma_distribution": [loss.get("p_mean"), loss.get("p_std")]})
        out[name] = info
    return out


def _priors_text(priors: dict[str, dict]) -> str:
    return "; ".join(
        f"`{n}` sha256 {p['sha256']}…" + (f", the pair of `{p['pair_of'][0]}` (σ ≤ {p['sigma_switch']}) and "
                                          f"`{p['pair_of'][1]}`" if p.get("pair_of") else "") + (f", {p['steps']} training steps ({p.get('images')} images) on {p.get('device')}"
                                          + (", fine-tuned from the previous prior" if p.get("fine_tuned") else "")
                                          + (" with patch crops" if p.get("patch_crops") else "")
                                          + (f" and ln σ ~ N({p['sigma_distribution'][0]:g}, {p['sigma_distribution'][1]:g}²)"
                                             if p.get("sigma_distribution", EDM_SIGMA_DISTRIBUTION) != EDM_SIGMA_DISTRIBUTION
                                             else "")
                                          + (f" ({p['steps_in_all']} steps in all)"
                                             if p.get("steps_in_all", p["steps"]) != p["steps"] else "")
                                          if p.get("steps") is not None else "")
        for n, p in priors.items()) or "none found"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def setting_label(setting: str, samples: int, prior: Optional[str] = None, adapt: bool = False,
                  warm: Optional[tuple[str, float]] = None) -> str:
    """The record's setting: ``<setting>+ccdf-<baseline>-t<t0>`` when the sampler started from that classical
    reconstruction at σ(t0) (CCDF warm start, ``reconstruct(..., options={"warm_start": …, "t0": …})``),
    ``+scd`` when the prior was adapted to each slice while sampling (``samplers.run(..., adapt=True)``,
    Steerable Conditional Diffusion), ``-mean<K>`` for the mean of K > 1 samples (not for baselines), and
    ``, prior <name>`` when a diffusion row used a prior other than the shipped default."""
    if setting == "classical":
        return setting
    label = f"{setting}+ccdf-{warm[0]}-t{warm[1]:g}" if warm else setting
    label = f"{label}+scd" if adapt else label
    label = f"{label}-mean{samples}" if samples > 1 else label
    return f"{label}, prior {prior}" if prior else label


def base_setting(label: str) -> str:
    """The setting of a record's label without its ``, prior <name>`` part (:func:`setting_label`)."""
    return label.split(", prior ", 1)[0]


def prior_label(run: dict) -> Optional[str]:
    """The ``<name>`` of a row's ``, prior <name>`` setting suffix; None for a row of the shipped prior."""
    parts = str(run.get("setting", "")).split(", prior ", 1)
    return parts[1] if len(parts) == 2 else None


def parse_priors(text: str) -> dict[str, str]:
    """``--priors mri=NAME,ct=NAME`` → ``{"mri": NAME, "ct": NAME}`` (missing modalities keep their name)."""
    out = {"mri": "mri", "ct": "ct"}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, name = part.partition("=")
        if not sep or key not in out or not name:
            raise MedreconError(f"--priors: expected 'mri=NAME,ct=NAME', received {text!r}")
        out[key] = name
    return out


def run_one(problem, method: str, setting: str, steps: Optional[int], prior: Any, device: torch.device,
            samples: int = 1, adapt: bool = False, warm: Optional[tuple[str, float]] = None) -> tuple[dict, np.ndarray]:
    """Reconstruct ``problem`` with ``method``; return the record and the output ``[n, H, W]``.
    Setting ``tuned`` runs the sampler's validated preset (``samplers.run(..., preset="tuned")``).
    ``samples`` > 1 (diffusion only): the mean of that many posterior samples (``samplers.run(...,
    samples=K)``); the record's setting becomes ``<setting>-mean<K>`` and its NFE counts all K runs.
    ``adapt`` (diffusion only): SCD test-time adaptation at its official setting (``samplers.run(...,
    adapt=True)``); the setting becomes ``<setting>+scd`` and NFE / backward passes include the adaptation.
    ``warm`` = (classical method, t0) (diffusion only): CCDF warm start, the sampler runs the last t0 fraction
    of its schedule from that method's reconstruction (``+ccdf-<method>-t<t0>``; time includes the baseline's)."""
    from medrecon.recon import is_classical, reconstruct
    from medrecon.samplers import preset_settings

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    options = {"preset": "tuned"} if setting == "tuned" else {}
    if samples > 1 and not is_classical(method):
        options["samples"] = int(samples)
    if adapt and not is_classical(method):
        options["adapt"] = True
    if warm and not is_classical(method):
        options.update(warm_start=warm[0], t0=float(warm[1]))
    image, stats = reconstruct(problem, method, prior=None if is_classical(method) else prior, steps=steps, seed=0,
                               options=options)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    n = len(problem.slices)
    rec = {
        "method": method, "kind": "classical" if is_classical(method) else "diffusion", "setting": setting,
        "steps": stats.get("steps", steps), "nfe": int(stats.get("nfe", 0)), "backward_passes": int(stats.get("backward_passes", 0)),
        "seconds_total": round(seconds, 3), "seconds_per_slice": round(seconds / n, 4), "n": n,
        "peak_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else round(_peak_rss_mb(), 1),
        "mem_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
        "metrics": slice_metrics(problem.modality, problem.target, image), "status": "ok",
    }
    if stats.get("data_term"):  # a CT method that fits the unweighted data term (samplers.METHODS[m].weighted)
        rec["data_term"] = stats["data_term"]
    if rec["kind"] == "diffusion" and steps is None:
        rec["steps"] = preset_settings(method, "tuned" if setting == "tuned" else "official")["steps"]
    if setting == "tuned":
        rec["preset"] = preset_settings(method, "tuned")
    if "samples" in options or "adapt" in options or "warm_start" in options:
        rec.update(setting=setting_label(setting, samples, adapt="adapt" in options,
                                         warm=(options["warm_start"], options["t0"]) if "warm_start" in options else None))
    if "warm_start" in options:
        rec["warm_start"] = {"method": options["warm_start"], "t0": options["t0"]}
    if "samples" in options:
        rec["samples"] = int(samples)
    if "adapt" in options:
        from medrecon.samplers.adapt import Adaptation
        rec["adapt"] = dataclasses.asdict(Adaptation())
    return rec, image


class Recorder:
    """Accumulates runs and rewrites ``OUT.json`` + ``OUT.npz`` (atomically) after each one."""

    def __init__(self, path: Optional[Path], meta: dict) -> None:
        self.path, self.meta, self.runs, self.images = path, meta, [], {}

    def add(self, rec: dict, image: Optional[np.ndarray], target: Optional[np.ndarray]) -> None:
        self.runs.append(rec)
        key = group_key(rec["task"], rec["data"], rec["size"])
        if target is not None:
            self.images[f"{key}|target"] = target[0].astype(np.float32)
        if image is not None:
            self.images[f"{key}|{rec['method']}|{rec['setting']}"] = image[0].astype(np.float32)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        from medrecon.io.atomic import atomic_path

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"meta": self.meta, "runs": self.runs}, indent=1))
        with atomic_path(self.path.with_suffix(".npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **self.images)


def plan_runs(args: argparse.Namespace) -> list[tuple[str, str, str, str, Optional[int]]]:
    """The ordered (task, data, method, setting, steps) list for ``args``."""
    from medrecon.samplers import METHODS

    if args.gpu_plan:
        return ([(t, d, m, "classical", None) for t, d, m in GPU_PLAN_CLASSICAL]
                + [(t, d, m, "official", None) for t, d, m in GPU_PLAN])
    tasks = _split(args.tasks, TASKS, "task")
    datas = _split(args.data, DATASETS, "data set")
    runs = []
    for t in tasks:
        mod = TASKS[t].modality
        wanted = [m for m in args.methods.split(",") if m]
        methods: list[str] = []
        for m in wanted:
            if m == "classical":
                methods += list(CLASSICAL[mod])
            elif m == "diffusion":
                methods += list(METHODS)
            elif m in METHODS or m in CLASSICAL["mri"] + CLASSICAL["ct"]:
                methods.append(m)
            else:
                raise MedreconError(f"unknown method {m!r}; expected classical, diffusion, "
                                    f"{', '.join(METHODS)}, {', '.join(sorted(set(CLASSICAL['mri'] + CLASSICAL['ct'])))}")
        for d in datas:
            for m in dict.fromkeys(methods):
                if m not in METHODS:
                    if m in CLASSICAL[mod]:
                        runs.append((t, d, m, "classical", None))
                    continue
                why = not_applicable(m, t, args.size)
                if why is not None:
                    print(f"{t} {d} {m}: not applicable ({why})", flush=True)
                    continue
                fast = fast_steps(m, args.fast_steps)
                if args.steps is not None:
                    runs.append((t, d, m, "custom", args.steps))
                    continue
                if args.setting in ("official", "both"):
                    runs.append((t, d, m, "official", None))
                if args.setting in ("fast", "both") and not (args.setting == "both" and fast == METHODS[m].steps):
                    runs.append((t, d, m, "fast", fast))
                if args.setting in ("tuned", "both") and METHODS[m].tuned is not None:
                    runs.append((t, d, m, "tuned", None))
    return runs


def _split(value: str, choices: Iterable[str], what: str) -> list[str]:
    items = list(choices) if value == "all" else [v for v in value.split(",") if v]
    bad = [v for v in items if v not in choices]
    if bad:
        raise MedreconError(f"unknown {what} {bad}; expected 'all' or a comma list of {', '.join(choices)}")
    return items


def not_applicable(method: str, task: str, size: int) -> Optional[str]:
    """Why sampler ``method`` cannot run on ``task`` at ``size`` × ``size`` by its own requirements (not compute),
    or ``None``: an exact SVD (``Method.needs == "svd"``) exists for single-coil Cartesian MRI only, and a
    sampler's ``max_size`` keyword default (``feng2023``) bounds the image side."""
    from medrecon.samplers import METHODS

    m = METHODS.get(method)
    if m is None:
        return None
    t = TASKS[task]
    if m.needs == "svd" and not (t.modality == "mri" and t.coils == 1):
        return "needs an exact SVD; multi-coil SENSE and CT have none"
    limit = inspect.signature(m.fn).parameters.get("max_size")
    if limit is not None and isinstance(limit.default, int) and size > limit.default:
        return f"limited to ≤ {limit.default}² pixels"
    return None


def same_ground_truth(runs: list[dict]) -> list[dict]:
    """Mark rows that were computed on other ground-truth slices than the rest of their table as
    ``status: "excluded"`` (copies; the table lists them apart and no target uses them). Per (task, data,
    size) the reference is the data fingerprint (``facts.data_sha256``) of most ok rows; a tie goes to the
    fingerprint of the newest row (the highest ``file_index`` from :func:`merge`, else the last in
    ``runs``). Rows without a fingerprint are kept."""
    out = []
    seen: dict[tuple, dict[str, tuple[int, tuple[int, int]]]] = {}  # group → fingerprint → (rows, newest row)
    for position, r in enumerate(runs):
        sha = r.get("facts", {}).get("data_sha256")
        if r.get("status") == "ok" and sha:
            group = seen.setdefault((r["task"], r["data"], r.get("size")), {})
            count, newest = group.get(sha, (0, (-2, -1)))
            group[sha] = (count + 1, max(newest, (r.get("file_index", -1), position)))
    reference = {g: max(group, key=group.get) for g, group in seen.items()}
    for r in runs:
        sha = r.get("facts", {}).get("data_sha256")
        ref = reference.get((r["task"], r["data"], r.get("size")))
        if r.get("status") == "ok" and sha and ref and sha != ref:
            r = {**r, "status": "excluded", "error": f"other ground-truth slices (data {sha[:12]}, table {ref[:12]})"}
        out.append(r)
    return out


def _eval_cost(method: str, steps: Optional[int]) -> float:
    """Network-evaluation equivalents of a run (a backward pass ≈ 2 evaluations)."""
    from medrecon.samplers import METHODS

    nfe = (steps or METHODS[method].steps) * NFE_PER_STEP.get(method, 1)
    return nfe * (3.0 if method in BACKWARD else 1.0)


def warm_of(args: argparse.Namespace) -> Optional[tuple[str, float]]:
    """``(--warm-start, --t0)`` or None."""
    return (args.warm_start, float(args.t0)) if args.warm_start else None


def benchmark(args: argparse.Namespace) -> Recorder:
    """Run the planned runs, recording each (errors are recorded, not raised)."""
    from medrecon.recon import resolve_device

    device = resolve_device(args.device)
    runs = plan_runs(args)
    missing = {m for m in ("skimage", "h5py", "sigpy", "pydicom") if importlib.util.find_spec(m) is None}
    if missing & {"skimage", "h5py"}:
        raise MedreconError(f"the benchmark needs {', '.join(sorted(missing & {'skimage', 'h5py'}))} (pip install scikit-image h5py)")
    for mod, why, drop in (("sigpy", "ESPIRiT of the multi-coil tasks", lambda r: TASKS[r[0]].coils > 1),
                           ("pydicom", "the real (ood) slices", lambda r: r[1] == "ood")):
        if mod in missing:
            print(f"{mod} is not installed: skipping {why}", flush=True)
            runs = [r for r in runs if not drop(r)]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
        "size": args.size, "n": args.n, "mri_noise_std": MRI_NOISE, "ct_dose": CT_DOSE, "coils": COILS,
        "command": " ".join(sys.argv), "fast_steps": args.fast_steps, "priors": prior_facts(("mri", "ct", *parse_priors(args.priors).values())),
        "network": args.network if device.type == "cuda" else "eager",
        "note": "CPU timings are disturbed by other jobs sharing the machine" if device.type == "cpu" else "",
    }
    rec = Recorder(Path(args.json) if args.json else None, meta)
    prior_names = parse_priors(args.priors)
    loaded: dict[Any, Any] = {}  # prior name → Prior; (name, n, size) → warmed up
    problems: dict[tuple[str, str], Any] = {}
    ms_per_eval = GPU_MS_PER_EVAL if device.type == "cuda" else None
    t_start = time.perf_counter()
    for i, (t, d, m, setting, steps) in enumerate(runs):
        task = TASKS[t]
        modality_prior = prior_names["mri" if TASKS[t].modality == "mri" else "ct"]
        label = setting_label(setting, args.samples,
                              None if modality_prior in ("mri", "ct") or m in CLASSICAL["mri"] + CLASSICAL["ct"] else modality_prior,
                              adapt=args.adapt, warm=warm_of(args))
        head = f"[{i + 1}/{len(runs)} {time.perf_counter() - t_start:6.1f}s] {t} {d} {m} {label}"
        if args.budget_s:
            classical = m in CLASSICAL["mri"] + CLASSICAL["ct"]
            need = (CLASSICAL_S_ESTIMATE if classical or not ms_per_eval
                    else args.samples * _eval_cost(m, steps) * ms_per_eval / 1000.0)
            left = args.budget_s - (time.perf_counter() - t_start)
            if need > left:
                print(f"{head}: skipped (needs ≈{need:.0f} s, {left:.0f} s of --budget-s left)", flush=True)
                continue
        base = {"task": t, "data": d, "size": args.size, "device_name": meta["device_name"]}
        try:
            if (t, d) not in problems:
                x, info = load_images(task.modality, d, args.n, args.size, Path(args.anatomy))
                prob, facts = make_problem(task, x, device)
                problems[(t, d)] = (prob, {**info, **facts})
            prob, facts = problems[(t, d)]
            facts.setdefault("data_sha256", hashlib.sha256(np.ascontiguousarray(prob.target, np.float32).tobytes()).hexdigest()[:16])
            prior = None
            if m not in CLASSICAL["mri"] + CLASSICAL["ct"]:
                key = prior_names["mri" if task.modality == "mri" else "ct"]
                if key not in loaded:
                    loaded[key] = priors.load(key, device=device)
                    if args.network != "eager" and device.type == "cuda":  # same numerics in fp32: replay only
                        loaded[key] = priors.FastDenoiser(
                            loaded[key], dtype=torch.bfloat16 if args.network == "graphs-bf16" else None)
                prior = loaded[key]
                if device.type == "cuda" and (key, args.n, args.size) not in loaded:  # warm-up outside the timing
                    dtype = torch.complex64 if task.modality == "mri" else torch.float32
                    with torch.no_grad():
                        prior(torch.zeros(args.n, 1, args.size, args.size, dtype=dtype, device=device),
                              1.0)
                    loaded[(key, args.n, args.size)] = True
            r, image = run_one(prob, m, setting, steps, prior, device, samples=args.samples, adapt=args.adapt,
                               warm=warm_of(args))
            if r["kind"] == "diffusion":
                r.update(setting=label, prior=key)
            r.update(base, facts=facts)
            rec.add(r, image, prob.target)
            if device.type == "cuda" and r["kind"] == "diffusion" and r["nfe"]:
                ms_per_eval = 1000.0 * r["seconds_total"] / (r["nfe"] + 2 * r["backward_passes"])
            mt = r["metrics"]
            print(f"{head}: PSNR {np.mean(mt['psnr']):.2f} SSIM {np.mean(mt['ssim']):.3f} NFE {r['nfe']} "
                  f"{r['seconds_per_slice']:.2f} s/slice", flush=True)
        except (MedreconError, ValueError, RuntimeError, ImportError) as err:
            rec.add({**base, "method": m, "setting": label, "status": "error", "error": str(err)}, None, None)
            print(f"{head}: ERROR {err}", flush=True)
    return rec


# -- report --------------------------------------------------------------------------------------
def group_key(task: str, data: str, size: int) -> str:
    """The ``task|data|size`` prefix of the slice-0 image keys in the ``.npz`` sidecars."""
    return f"{task}|{data}|{size}"


def groups(runs: list[dict]) -> list[tuple[str, str, int]]:
    """The (task, data, size) tables present in ``runs``, in TASKS × DATASETS × size order."""
    present = {(r["task"], r["data"], r.get("size")) for r in runs}
    return [(t, d, n) for t in TASKS for d in DATASETS for n in sorted({g[2] for g in present if g[:2] == (t, d)})]


def _fmt(vals: list[float], digits: int) -> str:
    a = np.asarray(vals, dtype=float)
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


SOURCES = ROOT / "benchmarks" / "results_sources.json"


def read_sources(path: Path) -> tuple[list[Path], list[str]]:
    """The run files (paths relative to the repository root, in merge order) and the Notes paragraphs of
    a RESULTS.md recipe (``benchmarks/results_sources.json``); a missing file or key is a clear error."""
    try:
        doc = json.loads(Path(path).read_text())
        files, notes = doc["files"], doc["notes"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise MedreconError(f"{path}: not a results recipe with 'files' and 'notes' ({type(err).__name__}: {err})") from err
    paths = [ROOT / f for f in files]
    lost = [str(f) for f, q in zip(files, paths) if not q.is_file()]
    if lost:
        raise MedreconError(f"{path} names run files that do not exist: {', '.join(lost)}")
    return paths, [str(n) for n in notes]


def name_the_prior(run: dict, recorded: dict[str, dict], current: dict[str, dict]) -> dict:
    """A diffusion row of an older file that ran with weights which are no longer the shipped default
    of its modality gets the setting ``<setting>, prior <name>`` (like a ``--priors`` run): ``name`` is
    the current checkpoint with the sha256 its file recorded (``recorded``, the file's
    ``meta["priors"]``), else ``sha256 <hex>…``; rows of files that recorded no prior (scripts older than
    the ``priors`` meta, all written before today's default weights) get ``not recorded``. Rows that name
    their prior in the setting (``--priors`` runs) are returned unchanged; so is every row that ran with
    the default's weights. A row's ``prior`` (the name it loaded, recorded since session 7) picks its
    entry of ``recorded``."""
    if run.get("kind") != "diffusion" or prior_label(run) is not None:
        return run
    modality = "mri" if str(run.get("task", "")).startswith("mri") else "ct"
    used = (recorded.get(run.get("prior") or modality) or {}).get("sha256")
    if (current.get(modality) or {}).get("sha256") == used:
        return run
    if not used:  # an older script: which weights ran is unknown, only that the current default is newer
        return {**run, "setting": f"{run['setting']}, prior not recorded", "prior": "not recorded"}
    name = next((n for n, f in current.items() if f.get("sha256") == used), f"sha256 {used}…")
    return {**run, "setting": f"{run['setting']}, prior {name}", "prior": name}


def merge(paths: list[Path]) -> tuple[list[dict], dict, list[dict]]:
    """Runs of several JSONs (a later file's run replaces an earlier run of the same task, data, size,
    method and setting, unless it failed and the earlier one did not), the slice-0 images keyed
    ``task|data|size|method|setting`` (older sidecars without the size get their run's; each file's
    ground truth also as ``task|data|size|target|<data fingerprint>``), and the metas. Every run gains
    ``file_index``, its file's position in ``paths`` (:func:`same_ground_truth` breaks ties on it).

    The fingerprint hashes the ground truth's bytes, and the same generator seed gives images that differ
    in the last bits from one CPU to another (1.8e-7 of the maximum between this project's AMD and Intel
    machines, mri-sc-4x held-out). So a fingerprint whose slice-0 ground truth equals an earlier file's
    within :data:`SAME_TARGET_RTOL` of its maximum is read as that file's (``facts.data_sha256``; the
    file's own stays in ``facts.data_sha256_file``). Images from other anatomy differ by far more (1.5 %)."""
    runs: dict[tuple, dict] = {}
    images: dict[str, np.ndarray] = {}
    first_target: dict[str, list[tuple[str, np.ndarray]]] = {}  # group → (fingerprint, slice-0 truth) first seen
    alias: dict[str, str] = {}  # fingerprint → the earlier fingerprint of the same slices
    metas = []
    current = prior_facts(tuple(priors.available()))
    for index, p in enumerate(paths):
        doc = json.loads(Path(p).read_text())
        metas.append(doc["meta"])
        shas: dict[str, str] = {}  # group key → this file's data fingerprint there
        for r in doc["runs"]:
            r = name_the_prior(r, doc["meta"].get("priors") or {}, current)
            key = (r["task"], r["data"], r.get("size"), r["method"], r["setting"])
            if r.get("status") == "ok" or runs.get(key, {}).get("status") != "ok":  # a failure never hides a result
                runs[key] = {**r, "file_index": index}
            sha = r.get("facts", {}).get("data_sha256")
            if sha:
                shas[group_key(r["task"], r["data"], r.get("size") or doc["meta"]["size"])] = sha
        side = Path(p).with_suffix(".npz")
        if side.is_file():
            with np.load(side) as z:
                for k in z.files:  # sidecars written before the size was part of the key: task|data|…
                    parts = k.split("|")
                    if len(parts) in (3, 4) and not parts[2].isdigit():
                        parts.insert(2, str(doc["meta"]["size"]))
                    image = z[k].astype(np.float32)  # some sidecars are stored as float16
                    images["|".join(parts)] = image
                    g = "|".join(parts[:3])
                    if parts[3:] == ["target"] and g in shas:
                        images[f"{g}|target|{shas[g]}"] = image
                        _match_target(first_target.setdefault(g, []), shas[g], image, alias)
    out = []
    for r in runs.values():
        sha = r.get("facts", {}).get("data_sha256")
        if sha in alias:
            r = {**r, "facts": {**r["facts"], "data_sha256": alias[sha], "data_sha256_file": sha}}
        out.append(r)
    return out, images, metas


def _match_target(seen: list[tuple[str, np.ndarray]], sha: str, image: np.ndarray, alias: dict[str, str]) -> None:
    """Record ``sha → earlier fingerprint`` in ``alias`` when ``image`` (a slice-0 ground truth) equals an
    earlier one of its group within :data:`SAME_TARGET_RTOL` of its maximum; else remember it (:func:`merge`)."""
    if sha in alias or any(s == sha for s, _ in seen):
        return
    scale = max(float(np.abs(image).max()), 1e-12)
    for earlier, ref in seen:
        if ref.shape == image.shape and float(np.abs(ref - image).max()) <= SAME_TARGET_RTOL * scale:
            alias[sha] = earlier
            return
    seen.append((sha, image))


def _best(runs: list[dict], pred) -> Optional[dict]:
    ok = [r for r in runs if r.get("status") == "ok" and pred(r)]
    return max(ok, key=lambda r: np.mean(r["metrics"]["psnr"])) if ok else None


def _psnr(r: dict) -> float:
    return float(np.mean(r["metrics"]["psnr"]))


def targets_section(runs: list[dict]) -> list[str]:
    """The issue's targets with the achieved numbers (computed from ``runs``)."""
    lines = ["## Targets", "",
             "Best classical = the best of every baseline run (zero-filled, SENSE, L1-wavelet, TV / FBP, TV), stricter "
             "than the issue's L1-wavelet/TV. Notes state what was and was not measured.", "",
             "| target | task | data | best diffusion | best classical | margin | status | notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    target_tasks = [t for t, _ in TARGET_ROWS]
    for task, d, size in sorted((g for g in groups(runs) if g[0] in target_tasks), key=lambda g: (target_tasks.index(g[0]), g[2])):
        rs = [r for r in runs if r["task"] == task and r["data"] == d and r.get("size") == size]
        prior, diffusion = _rows_of_one_prior(rs, lambda group: bool(group))
        bd = _best(diffusion, lambda r: True)  # diffusion rows of one prior
        bc = _best(rs, lambda r: r.get("kind") == "classical")
        if bd is None or bc is None:
            lines.append(f"| diffusion ≥ classical + 2 dB | {task} {size}² | {d} | {_name(bd)} | {_name(bc)} | – | not measured | |")
            continue
        margin = _psnr(bd) - _psnr(bc)
        status = "met" if margin >= 2.0 else f"missed by {2.0 - margin:.2f} dB"
        notes = "; ".join(n for n in (_other_prior_note(prior), _notes(diffusion + [bc], d)) if n)
        lines.append(f"| diffusion ≥ classical + 2 dB | {task} {size}² | {d} | {_name(bd)} {_psnr(bd):.2f} dB | "
                     f"{_name(bc)} {_psnr(bc):.2f} dB | {margin:+.2f} dB | {status} | {notes} |")
    for task, d, size in groups(runs):
        rs = [r for r in runs if r["task"] == task and r["data"] == d and r.get("size") == size]
        prior, diffusion = _rows_of_one_prior(rs, lambda group: any(map(_is_fast, group)) and any(map(_is_slow, group)))
        fast, slow = _best(diffusion, _is_fast), _best(diffusion, _is_slow)
        if fast is None and slow is None:
            continue
        if fast is None or slow is None:
            lines.append(f"| ≤100-NFE within 0.5 dB of best ≥1000-NFE | {task} {size}² | {d} | {_name(fast or slow)} | – | – | "
                         f"not measured | no {'≥1000' if slow is None else '≤100'}-NFE run |")
            continue
        gap = _psnr(slow) - _psnr(fast)
        status = "met" if gap <= 0.5 else f"missed by {gap - 0.5:.2f} dB"
        lines.append(f"| ≤100-NFE within 0.5 dB of best ≥1000-NFE | {task} {size}² | {d} | {_name(fast)} {_psnr(fast):.2f} dB "
                     f"vs {_name(slow)} {_psnr(slow):.2f} dB | – | {-gap:+.2f} dB | {status} | {_other_prior_note(prior)} |")
    lines += ["", "**Speed (H100, 320², 1000 NFE ≤ 5 s; non-network work ≤ 10 %).** " + SPEED_NOTE, ""]
    return lines


def _is_fast(r: dict) -> bool:
    return 0 < r.get("nfe", 0) <= 100


def _is_slow(r: dict) -> bool:
    return r.get("nfe", 0) >= 1000


def _rows_of_one_prior(rows: list[dict], enough: Callable[[list[dict]], bool]) -> tuple[Optional[str], list[dict]]:
    """The diffusion rows a target is judged on: those of the shipped prior (no :func:`prior_label`) when
    they are ``enough``, else those of the other prior with the most rows that are (a target never mixes
    priors: a fast row of new weights against a slow row of old ones compares nothing)."""
    by_prior: dict[Optional[str], list[dict]] = {}
    for r in rows:
        if r.get("kind") == "diffusion" and r.get("status") == "ok":
            by_prior.setdefault(prior_label(r), []).append(r)
    if enough(by_prior.get(None, [])):
        return None, by_prior[None]
    usable = sorted(((p, g) for p, g in by_prior.items() if p is not None and enough(g)), key=lambda pg: -len(pg[1]))
    return usable[0] if usable else (None, by_prior.get(None, []))


def _other_prior_note(prior: Optional[str]) -> str:
    return "" if prior is None else f"prior {prior}: the shipped prior was not run here"


def _bwd(r: dict) -> str:
    return f" (+{r['backward_passes']} bwd)" if r.get("backward_passes") else ""


def _notes(rs: list[dict], data: str) -> str:
    """What limits a comparison: diffusion settings measured, distinct images of the real set."""
    ok = [r for r in rs if r.get("status") == "ok" and r.get("kind") == "diffusion"]
    notes = []
    if not any(base_setting(r["setting"]) == "official" for r in ok):
        notes.append(f"diffusion at ≤ {max(r['nfe'] for r in ok)} NFE only (official settings not run)")
    distinct = next((r.get("facts", {}).get("distinct") for r in rs if r.get("status") == "ok"), None)
    if data == "ood" and distinct is not None:
        notes.append(f"{distinct} distinct real image(s)")
    return "; ".join(notes)


def _unweighted(r: dict) -> str:
    """``", unweighted"`` for a CT diffusion row that fitted one noise level for the whole sinogram: run
    before the PWLS data term (files before ``v12``), or by a method that unweights
    (``samplers.METHODS[m].weighted`` False, recorded as ``data_term``); FBP and TV see the same sinogram
    either way."""
    ct = str(r.get("task", "")).startswith("ct") and r.get("kind") == "diffusion"
    old = (r.get("facts") or {}).get("data_term") != "pwls" or r.get("data_term") == "unweighted"
    return ", unweighted" if ct and old else ""


def _setting(r: dict) -> str:
    """The setting cell: ``tuned`` rows name their preset's options (schedule, η …)."""
    extra = {k: v for k, v in (r.get("preset") or {}).items() if k != "steps"}
    return r["setting"] + _unweighted(r) + (" (" + ", ".join(f"{k} {v}" for k, v in extra.items()) + ")" if extra else "")


def _name(r: Optional[dict]) -> str:
    if r is None:
        return "–"
    return f"`{r['method']}`" + (f" ({r['setting']}{_unweighted(r)}, {r['nfe']} NFE)" if r.get("kind") == "diffusion" else "")


def render(runs: list[dict], metas: list[dict], notes: Iterable[str] = ()) -> str:
    """RESULTS.md text from merged runs (``notes``: the ``--note`` lines, printed under "Notes"); rows on
    other ground-truth slices than their table's are listed apart (:func:`same_ground_truth`)."""
    from medrecon.samplers import METHODS

    runs = same_ground_truth(runs)
    sizes = sorted({r.get("size") for r in runs})
    lines = [
        "# medrecon quality results",
        "",
        "Generated by `python benchmarks/quality.py` (`medrecon bench`); do not edit by hand. "
        "Mean ± std over the slices of each task (PSNR/SSIM/NMSE with the fastMRI definitions, "
        "`medrecon.metrics`; MRI on magnitude with data range = slice max, CT on HU with data range = slice max − min).",
        "",
        f"* Image sizes: {', '.join(f'{s}²' for s in sizes)}, one table per task, data set and size (the shipped priors "
        "were trained on 256² images, then fine-tuned with half of each batch 128² crops: see their manifests).",
        f"* MRI: fastMRI equispaced-fraction masks (seed 0); complex k-space noise σ = {MRI_NOISE} per real component "
        f"on images normalised to a 99.5th-percentile magnitude of 1 (SNR per task below); multi-coil: {COILS} birdcage coils, "
        f"centre widened to ≥ {MIN_ACS_LINES} lines (ESPIRiT on the 5 lines of centre fraction 0.04 at N = 128 zeroed most "
        "of the image: SENSE 8.3 dB PSNR, measured with the earlier square calibration), reconstructed with ESPIRiT maps "
        "from the undersampled data (`physics.coils.espirit`, calibration region min(24, N) rows × the centre columns); "
        "every method's output is zero outside the maps' support (`physics.MultiCoilMRI.support`).",
        f"* CT: Beer–Lambert + Poisson detector noise at I₀ = {CT_DOSE:.0e} photons per bin, pixel {CT_FOV_MM:g} mm / N "
        "for every slice, held-out and real alike (the DICOM pixel spacing is not used). Since the `v12` files every "
        "method fits a data term weighted by each bin's Poisson noise, estimated from the noisy sinogram (PWLS, "
        "`medrecon.recon.weight_by_dose`; FBP and the FBP-preconditioned TV see the sinogram unchanged); earlier CT rows "
        "used one noise level, the RMS over bins, for the whole sinogram (Notes).",
        "* Data: `heldout` = the synthetic generators' held-out split (never used in training; half brain/head, half "
        "body); `ood` = the real DICOM slices shipped with pydicom (distinct images × flips/transpositions).",
        "* Settings: `official` = the method's published step count (`medrecon.samplers.METHODS`); `fast` = ≤ 100 NFE "
        "with the published schedule and options; `tuned` = the method's validated ≤ 100-NFE preset "
        "(`METHODS[m].tuned`, named in the setting cell), chosen with `benchmarks/tune_fast.py` on held-out images "
        "20–24 of each set, never on the reported images 0–4 (`medrecon.samplers.TUNED_NOTE`); "
        "`<setting>-mean<K>` = the mean of K posterior samples at that setting (`samplers.run(..., samples=K)`, "
        "a Monte-Carlo posterior mean: K× the NFE and time); "
        "`classical` = baselines with their defaults (`medrecon.baselines`).",
        "* s/slice = batch wall time / slices (one batch of all slices per run). Peak memory: CUDA max allocated on GPU; "
        "on CPU the process peak RSS (a high-water mark, not per run). CPU timings are disturbed by other jobs "
        "sharing the 2-core machine.",
        "",
        "Runs merged into this file:",
        "",
    ]
    for m in metas:
        used = _priors_text(m["priors"]) if "priors" in m else "not recorded by this run (older script)"
        lines.append(f"* {m['date']} on {m['device_name']} (torch {m['torch']}), n = {m['n']}, size {m['size']}: "
                     f"`{m['command']}` — priors: {used}")
    lines += ["", f"Shipped priors when this file was written: {_priors_text(prior_facts())}.", ""]
    if notes:
        lines += ["## Notes", ""] + [f"* {n}" for n in notes] + [""]
    lines += targets_section(runs)
    for task_name, d, size in groups(runs):
        task = TASKS[task_name]
        rs = [r for r in runs if r["task"] == task_name and r["data"] == d and r.get("size") == size]
        facts = next((r.get("facts", {}) for r in rs if r.get("status") == "ok"), {})
        extra = ""
        if task.modality == "mri":
            extra = f"SNR {facts.get('snr_db', '?')} dB, {facts.get('mask_lines', '?')} lines"
            if "espirit_calib" in facts:
                extra += f", ESPIRiT calibration region {facts['espirit_calib']}"
        else:
            extra = f"I₀ {facts.get('dose', CT_DOSE):.0e}, pixel {facts.get('pixel_mm', 0):.3g} mm, sinogram noise ≈ {facts.get('noise_std', '?')} HU·px"
        excluded = [r for r in rs if r.get("status") == "excluded"]
        rs = [r for r in rs if r.get("status") != "excluded"]
        lines += [f"## {task.label} — {d}, {size}²", "", f"{facts.get('source', '')} ({facts.get('distinct', '?')} distinct images); {extra}.", "",
                  "| method | setting | steps | NFE | PSNR (dB) | SSIM | NMSE | s/slice | device | peak mem (MiB) | n |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        order = {m: i for i, m in enumerate(list(CLASSICAL[task.modality]) + list(METHODS))}
        rs.sort(key=lambda r: (order.get(r["method"], 99), base_setting(r["setting"]) != "official", r["setting"]))
        for r in rs:
            if r.get("status") != "ok":
                lines.append(f"| `{r['method']}` | {r['setting']} | | | not run: {r.get('error', '').splitlines()[0][:120]} | | | | | | |")
                continue
            mt = r["metrics"]
            lines.append(
                f"| `{r['method']}` | {_setting(r)} | {r.get('steps') or ''} | {r['nfe'] or ''}"
                f"{_bwd(r)} | {_fmt(mt['psnr'], 2)} | "
                f"{_fmt(mt['ssim'], 3)} | {_fmt(mt['nmse'], 4)} | {r['seconds_per_slice']:.3g} | {r['device_name']} | "
                f"{r['peak_mem_mb']:.0f} | {r['n']} |")
        ran = {(r["method"], base_setting(r["setting"])) for r in rs if r.get("status") == "ok"}
        # a fast row at the official step count is the official setting (same schedule and options)
        ran |= {(r["method"], "official") for r in rs if r.get("status") == "ok" and base_setting(r["setting"]) == "fast"
                and r["method"] in METHODS and r.get("steps") == METHODS[r["method"]].steps}
        why_not = {m: not_applicable(m, task_name, size) for m in METHODS}
        absent = [f"`{m}` {s}" for m in METHODS for s in ("official", "fast")
                  if (m, s) not in ran and why_not[m] is None
                  and not (s == "fast" and fast_steps(m, 100) == METHODS[m].steps)]
        if absent:
            lines += ["", "Not run for this table (compute): " + ", ".join(absent) + "."]
        cannot = [f"`{m}` ({why})" for m, why in why_not.items() if why is not None]
        if cannot:
            lines += ["", "Not applicable to this table: " + "; ".join(cannot) + "."]
        if excluded:
            lines += ["", "Left out of this table (computed on other ground-truth slices than most of its rows): "
                      + ", ".join(f"`{r['method']}` {r['setting']} ({_psnr(r):.2f} dB, {metas[r['file_index']]['date'][:16]})"
                                  if "file_index" in r and r["file_index"] < len(metas) else
                                  f"`{r['method']}` {r['setting']} ({_psnr(r):.2f} dB)" for r in excluded) + "."]
        fig = ROOT / "benchmarks" / "figures" / figure_name(task_name, d, size)
        if fig.is_file():
            lines += ["", f"![{task_name} {d} {size}²](figures/{fig.name})"]
        lines.append("")
    missing = [f"{t} {d}" for t in TASKS for d in DATASETS if not any(r["task"] == t and r["data"] == d for r in runs)]  # at any size
    if missing:
        lines += ["## Not measured yet", "", ", ".join(missing), ""]
    return "\n".join(lines)


def figures(runs: list[dict], images: dict, out_dir: Path) -> list[Path]:
    """One PNG per task × data: slice 0 of every run side by side (top) and |error| maps (bottom), rows on
    other ground-truth slices than their table's left out (:func:`same_ground_truth`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medrecon.samplers import METHODS

    runs = same_ground_truth(runs)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for t, d, size in groups(runs):
        task, g = TASKS[t], group_key(t, d, size)
        tkey = f"{g}|target"
        if tkey not in images:
            continue
        rs = [r for r in runs if r["task"] == t and r["data"] == d and r.get("size") == size and r.get("status") == "ok"
              and f"{g}|{r['method']}|{r['setting']}" in images]
        order = {m: i for i, m in enumerate(list(CLASSICAL[task.modality]) + list(METHODS))}
        rs.sort(key=lambda r: (order.get(r["method"], 99), base_setting(r["setting"]) != "official", r["setting"]))
        sha = next((r.get("facts", {}).get("data_sha256") for r in rs if r.get("facts", {}).get("data_sha256")), None)
        target = images.get(f"{tkey}|{sha}", images[tkey])  # the ground truth these rows were computed on
        lo, hi = (float(target.min()), float(target.max()))
        if task.modality == "ct":
            lo, hi = -200.0, 200.0  # brain/soft-tissue window, HU
        cols = len(rs) + 1
        fig, ax = plt.subplots(2, cols, figsize=(1.9 * cols, 4.1), squeeze=False)
        ax[0, 0].imshow(target, cmap="gray", vmin=lo, vmax=hi)
        ax[0, 0].set_title("ground truth", fontsize=7)
        ax[1, 0].axis("off")
        emax = 0.25 * (float(target.max()) - float(target.min()))
        for j, r in enumerate(rs, start=1):
            img = images[f"{g}|{r['method']}|{r['setting']}"]
            ax[0, j].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            label = r["method"] + ("" if r["kind"] == "classical" else f"\n{r['setting']} {r['nfe']} NFE")
            ax[0, j].set_title(f"{label}\n{r['metrics']['psnr'][0]:.1f} dB", fontsize=6)
            ax[1, j].imshow(np.abs(img - target), cmap="inferno", vmin=0, vmax=emax)
        for a in ax.ravel():
            a.set_xticks([])
            a.set_yticks([])
        fig.suptitle(f"{task.label} — {d}, {size}² (slice 0; bottom: |error|, 0…{emax:.3g})", fontsize=8)
        fig.tight_layout()
        path = out_dir / figure_name(t, d, size)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def figure_name(task: str, data: str, size: int) -> str:
    return f"quality_{task}_{data}_{size}.png"


def write_report(runs: list[dict], images: dict, metas: list[dict], results: Path, fig_dir: Path,
                 notes: Iterable[str] = ()) -> None:
    from medrecon.io.atomic import atomic_path

    figures(runs, images, fig_dir)
    with atomic_path(results) as tmp:
        tmp.write_text(render(runs, metas, notes))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medrecon bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="all", help=f"comma list of {', '.join(TASKS)} or 'all'")
    p.add_argument("--data", default="all", help="heldout, ood or all")
    p.add_argument("--methods", default="classical,diffusion",
                   help="comma list of method names, 'classical' and/or 'diffusion'")
    p.add_argument("--setting", default="both", choices=("fast", "official", "tuned", "both"),
                   help="both = official + fast + tuned (the last for methods with METHODS[m].tuned)")
    p.add_argument("--fast-steps", type=int, default=50, help="NFE cap of the fast setting (≤ 100)")
    p.add_argument("--steps", type=int, default=None, help="one custom step count for every sampler (setting 'custom')")
    p.add_argument("--samples", type=int, default=1,
                   help="diffusion rows: report the mean of K posterior samples (setting '<setting>-mean<K>', K× the NFE)")
    p.add_argument("--adapt", action="store_true",
                   help="diffusion rows: adapt the prior to each slice while sampling (Steerable Conditional Diffusion, "
                        "official setting; setting '<setting>+scd')")
    p.add_argument("--warm-start", default=None, metavar="BASELINE",
                   help="diffusion rows: CCDF warm start (Chung et al. 2022) from this classical reconstruction "
                        "(e.g. tv), running the last --t0 of the schedule (setting '<setting>+ccdf-<baseline>-t<t0>')")
    p.add_argument("--t0", type=float, default=None, help="with --warm-start: the fraction of the schedule run, in (0, 1]")
    p.add_argument("--priors", default="mri=mri,ct=ct",
                   help="prior per modality, e.g. 'mri=mri-c2f': rows with another than the shipped default "
                        "are labelled '<setting>, prior <name>'")
    p.add_argument("--n", type=int, default=10, help="slices per task (one batch)")
    p.add_argument("--size", type=int, default=128, help="image size N (N × N)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--anatomy", default=str(ROOT / ".devdata" / "mni152.npz"), help="MNI anatomy npz (else nilearn)")
    p.add_argument("--json", default=None, help="write raw per-run results here (and slice-0 images to the .npz beside it)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="build the report from these JSON files only")
    p.add_argument("--rebuild", action="store_true",
                   help=f"rebuild the report from {SOURCES.relative_to(ROOT)} (its run files in merge order and its "
                        "notes; --note lines are added after them)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"), help="the Markdown report to write")
    p.add_argument("--figures", default=str(ROOT / "benchmarks" / "figures"), help="folder of the quality_*.png figures")
    p.add_argument("--no-report", action="store_true", help="only write --json (no RESULTS.md / figures)")
    p.add_argument("--gpu-plan", action="store_true",
                   help="the one-session GPU preset (GPU_PLAN: key tasks × samplers at official settings, n = 10, "
                        "size 128, stops starting runs past --budget-s)")
    p.add_argument("--network", default="eager", choices=["eager", "graphs-fp32", "graphs-bf16"],
                   help="GPU: run the prior eagerly, or replay CUDA graphs (medrecon.priors.FastDenoiser) in fp32 "
                        "(the same arithmetic, less launch overhead) or bf16")
    p.add_argument("--budget-s", type=float, default=0.0, help="GPU: skip runs whose estimated time exceeds what is left")
    p.add_argument("--note", action="append", default=[], metavar="TEXT",
                   help="a line for the report's Notes section (repeatable): provenance or diagnostics measured "
                        "outside this script, stated with how they were measured")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fast_steps > 100 or args.fast_steps < 1:
        print(f"--fast-steps must be in 1…100, received {args.fast_steps}", file=sys.stderr)
        return 2
    if args.samples < 1:
        print(f"--samples must be ≥ 1, received {args.samples}", file=sys.stderr)
        return 2
    if (args.warm_start is None) != (args.t0 is None) or (args.t0 is not None and not 0 < args.t0 <= 1):
        print(f"--warm-start and --t0 go together, with t0 in (0, 1]; received {args.warm_start!r}, {args.t0!r}",
              file=sys.stderr)
        return 2
    if args.gpu_plan and not args.budget_s:
        args.budget_s = 200.0
    try:
        if args.rebuild and (args.merge or args.gpu_plan):
            raise MedreconError("--rebuild reads its files from " + str(SOURCES.relative_to(ROOT))
                                + "; it cannot be combined with --merge or --gpu-plan")
        if args.rebuild:
            files, notes = read_sources(SOURCES)
            args.note = notes + args.note
            runs, images, metas = merge(files)
        elif args.merge:
            runs, images, metas = merge([Path(p) for p in args.merge])
        else:
            rec = benchmark(args)
            runs, images, metas = rec.runs, rec.images, [rec.meta]
        if not args.no_report:
            write_report(runs, images, metas, Path(args.results), Path(args.figures), args.note)
            print(f"wrote {args.results}", flush=True)
    except MedreconError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
