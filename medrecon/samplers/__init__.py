"""Posterior samplers: one function per published method, one registry, one entry point.

>>> from medrecon import samplers
>>> samplers.available()
>>> x = samplers.run("dps", denoiser, operator, y, noise_std=0.01, steps=1000, generator=g)

Every sampler is ``sample_<name>(denoiser, operator, y, sigmas, *, noise_std, generator=None,
callback=None, **hparams)`` over a VE noise schedule ending in 0 (:mod:`.schedules`); methods published
for VP/DDPM models run on the linear-β DDPM schedule mapped to VE σ. :func:`run` builds the schedule
from the method's official defaults, counts denoiser evaluations and backward passes, and offers the
CCDF warm start (Chung, Sim & Ye, CVPR 2022) for every method: ``start_from=x̃₀, t0=…`` starts at
σ(t0) from ``x̃₀ + σ(t0)·n`` and runs only the last ``t0`` fraction of the steps, and coarse-to-fine
sampling (:mod:`.pyramid`, ``coarse_to_fine={"factor": 2, "until_sigma": σ}``) for the diffusion samplers, and
test-time adaptation of the prior to the measurement (:mod:`.adapt`, Steerable Conditional Diffusion,
``adapt=True``) for the same samplers.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from medrecon import MedreconError
from medrecon.samplers import core, schedules
from medrecon.samplers.adapt import Adaptation, Adapted, network_of
from medrecon.samplers.core import Generator
from medrecon.samplers.ddnm import sample_ddnm
from medrecon.samplers.ddrm import sample_ddrm
from medrecon.samplers.dds import sample_dds
from medrecon.samplers.dps import sample_dps
from medrecon.samplers.feng2023 import sample_feng2023
from medrecon.samplers.ilvr import sample_ilvr
from medrecon.samplers.langevin import sample_langevin
from medrecon.samplers.mcg import sample_mcg
from medrecon.samplers.pigdm import sample_pigdm
from medrecon.samplers.pyramid import coarse_to_fine as _coarse_to_fine
from medrecon.samplers.pyramid import parse as _parse_coarse_to_fine
from medrecon.samplers.recguide import sample_recguide
from medrecon.samplers.reddiff import sample_reddiff
from medrecon.samplers.scoresde import sample_scoresde
from medrecon.samplers.snips import sample_snips
from medrecon.samplers.song2022 import sample_song2022
from physics.operator import LinearOperator

__all__ = ["available", "preset_settings", "run", "support_table", "Stats", "Method", "METHODS", "TUNED_NOTE",
           "WEIGHTED_NOTE", "HARD_PROJECTION_WARNING", "schedules"]


@dataclass(frozen=True)
class Method:
    """A registry entry: the sampler and its official defaults."""

    fn: Callable[..., torch.Tensor]
    paper: str
    schedule: str  # "ve" (geometric VE-SDE levels) or "vp" (linear-β DDPM mapped to σ)
    steps: int  # official number of noise levels / steps
    sigma_range: tuple[float, float] = (0.01, 378.0)  # VE only; a denoiser's sigma_min/max take precedence
    needs: str = "operator"  # "operator" (A, Aᴴ), "pinv" (A⁺: SVD or CG), "svd" (exact SVD only)
    # "noisy": the published method uses σ_y; "damped": published for y = Ax, σ_y enters here through the
    # damped projection (core.noise_damping; option damped=False restores the published hard projection)
    noise: str = "noisy"
    posterior: bool = False  # claims to sample p(x | y) (in the limit of small steps)
    defaults: dict = field(default_factory=dict)
    pyramid: bool = True  # accepts run(..., coarse_to_fine=...) (a σ-schedule sampler)
    posterior_note: Optional[str] = None  # overrides the table's "samples p(x|y)" cell
    # run(..., preset="tuned"): a ≤ 100-NFE setting measured on a validation split (see TUNED_NOTE)
    tuned: Optional[dict] = None
    # fits a statistically weighted data term (physics.Weighted: CT PWLS, medrecon.recon.weight_by_dose) when
    # the problem carries one; False where the method's regulariser is tied to the unweighted fit and the
    # weights were measured to cost it (see WEIGHTED_NOTE): medrecon.recon.reconstruct then unweights
    weighted: bool = True


METHODS: dict[str, Method] = {
    "song2022": Method(sample_song2022, "Song, Shen, Xing & Ermon, ICLR 2022", "ve", 1000, (0.01, 128.0), "pinv",
                       "damped"),
    "dps": Method(sample_dps, "Chung, Kim, McCann, Klasky & Ye, ICLR 2023", "vp", 1000, weighted=False),
    "langevin": Method(sample_langevin, "Jalal, Arvinte, Daras, Price, Dimakis & Tamir, NeurIPS 2021", "ve", 1155,
                       (0.0066, 232.0), posterior=True),
    "scoresde": Method(sample_scoresde, "Song et al., ICLR 2021; Chung & Ye, MedIA 2022", "ve", 2000,
                       (0.01, 378.0), "pinv", "damped"),
    "ddnm": Method(sample_ddnm, "Wang, Yu & Zhang, ICLR 2023", "vp", 100, needs="pinv",
                   tuned={"steps": 100, "schedule": "karras", "eta": 1.0}),
    "ddrm": Method(sample_ddrm, "Kawar, Elad, Ermon & Song, NeurIPS 2022", "vp", 20, needs="svd"),
    "pigdm": Method(sample_pigdm, "Song, Vahdat, Mardani & Kautz, ICLR 2023", "vp", 100, needs="pinv"),
    "dds": Method(sample_dds, "Chung, Lee & Ye, ICLR 2024", "vp", 50, needs="pinv", weighted=False),
    "reddiff": Method(sample_reddiff, "Mardani, Song, Kautz & Vahdat, ICLR 2024", "vp", 50, needs="pinv",
                      weighted=False),
    "mcg": Method(sample_mcg, "Chung, Sim, Ryu & Ye, NeurIPS 2022", "vp", 1000, needs="pinv", noise="damped"),
    "ilvr": Method(sample_ilvr, "Choi, Kim, Jeong, Gwon & Yoon, ICCV 2021", "vp", 100, needs="pinv",
                   noise="damped"),
    "snips": Method(sample_snips, "Kawar, Vaksman & Elad, NeurIPS 2021", "ve", 500, (0.01, 90.0), "svd",
                    posterior=True),
    "recguide": Method(sample_recguide, "Ho, Salimans, Gritsenko, Chan, Norouzi & Fleet, NeurIPS 2022", "vp", 1000),
    # steps = Adam iterations of the flow; the schedule's end points are the ODE's σ range
    "feng2023": Method(sample_feng2023, "Feng, Smith, Rubinstein, Chang, Bouman & Freeman, ICCV 2023", "ve", 500,
                       (0.01, 100.0), pyramid=False,
                       posterior_note="variational: RealNVP q ≈ p(x|y) (exact ODE log-prior); ≤ 64² pixels"),
}


# Measured on mri-mc-8x 128² (session 13, benchmarks/RESULTS.md) with the published hard projection
# (damped=False): the methods published for noiseless data project onto {Ax = y} with A⁺; without an exact
# SVD that is CG on AᴴA, which amplifies the measurement noise where AᴴA is ill-conditioned (8-coil SENSE
# with ESPIRiT maps: ‖A‖²‖A⁺r‖/‖Aᴴr‖ = 19 / 123 / 2314 after 5 / 20 / 100 CG
# iterations for the noise residual r; at 50 NFE mcg gave 5.25 dB and song2022 −3.23 dB on the real slices).
HARD_PROJECTION_WARNING = (
    "{name} with damped=False assumes noiseless measurements (y = Ax) and projects onto them with A⁺, which "
    "amplifies measurement noise by 1/s on singular values s < 1 (multi-coil SENSE, sparse-view CT); with "
    "noise_std > 0 keep the default damped=True — benchmarks/RESULTS.md")


def _partial_isometry(operator: LinearOperator, like: torch.Tensor) -> bool:
    """Whether the operator has an exact SVD with singular values 0 and 1 only (single-coil Cartesian MRI),
    where A⁺ does not amplify noise."""
    svd = core._svd_or_none(operator, like)
    return svd is not None and bool(((svd.s == 0) | ((svd.s - 1).abs() <= 1e-6)).all())


# How the ``tuned`` presets were chosen. The published schedules were made for DDPM models trained on
# 1000 linear-β steps (σ from 157 down to 0.01); our priors are EDM models trained on σ ∈ [0.002, 80]
# with ln σ ~ N(−1.2, 1.2²). On the EDM schedule (Karras et al. 2022, eq. 5, ρ = 7, over the prior's
# own range) the same 100 network evaluations are spent where the prior was trained.
TUNED_NOTE = (
    "Chosen on a validation split that the benchmark never reports: held-out generator images 20–24 of "
    "each set (the benchmark reports 0–4), 128², 10 slices, CPU, `python benchmarks/tune_fast.py`. "
    "ddnm at 100 NFE, published linear-β schedule → EDM schedule: mri-sc-4x 29.39 → 30.80 dB (η = 0.85), "
    "29.16 → 30.95 dB (η = 1; 30.40 dB at η = 0.5; 30.05 dB at 50 NFE; 31.10 dB with σ_max = 20 instead "
    "of the prior's 80, not adopted: within the slice-to-slice spread; DDNM's time travel on 50 levels, "
    "travel_length 5, travel_repeat 2, 95 NFE: 30.79 dB, not adopted); ct-par-23 (η = 0.85 → the preset) "
    "39.18 → 40.67 dB. CCDF warm start of the preset from the TV reconstruction (reconstruct's "
    "options warm_start='tv', t0; shipped stage-3 priors, same split): mri-sc-4x from noise 31.87 dB; t0 = 0.2 / "
    "0.3 / 0.35 / 0.4 / 0.5 / 0.7: 29.15 / 31.39 / 31.85 / 31.88 / 31.76 / 31.76 dB, so t0 = 0.4 (40 NFE) for "
    "MRI; ct-par-23 from noise 42.82 dB, t0 = 0.35 (35 NFE) 42.95 dB."
)


# Why ``Method.weighted`` is False for some methods. Measured on ct-par-23 (I₀ = 10⁵, 128², stage-3 `ct` prior,
# CPU, one sampler seed; weighted = physics.Weighted(A, σ_ref/σ_i) from medrecon.recon.weight_by_dose,
# unweighted = the same sinogram with one noise level, the RMS of σ_i): ``python benchmarks/data_term.py
# --data heldout --n 4`` and ``--data ood --n 3``.
WEIGHTED_NOTE = (
    "ct-par-23, 128², PSNR weighted / unweighted (dB), 4 held-out slices; 3 real slices: "
    "ddnm official 41.09 / 41.19; 31.46 / 31.11 · pigdm 39.35 / 38.55; 30.63 / 28.35 · "
    "ilvr 33.99 / 28.90; 28.61 / 24.55 · song2022 (50 steps) 28.73 / 22.79; 25.88 / 20.49 · mcg (50 steps) "
    "33.99 / 29.18; 28.51 / 24.72 (these three with their published hard projection, before damped=True) · "
    "dds 36.58 / 39.69; 28.91 / 30.48 · reddiff 25.71 / 30.34; 21.64 / 26.02 · dps (50 steps; its official "
    "1000 not measured) 17.88 / 21.67; 15.86 / 16.51. 10-slice benchmark rows (benchmarks/logs/quality-cpu-v13-*): "
    "dds 35.78 / 38.87 held-out and 29.33 / 30.66 real, reddiff 23.72 / 30.40 and 22.56 / 25.98. dps, dds "
    "and reddiff lose with the weights and run unweighted (medrecon.recon.unweighted). Each keeps a fixed "
    "budget or fixed weights as its regulariser (DDS: 5 CG iterations on I + γAᴴW²A; RED-diff: 50 Adam steps "
    "from a CG pseudo-inverse with fixed λ and v; DPS: a step normalised by the residual's norm), and the "
    "weights (0.05–1.5 on the real slices) change what that budget fits: a reading of the code, not measured."
)


def available() -> list[str]:
    """The registered method names, in registry order."""
    return list(METHODS)


def preset_settings(name: str, preset: str = "official") -> dict:
    """What a preset sets for method ``name``: ``"official"`` → ``{"steps": published count}`` (schedule and
    options are the method's defaults); ``"tuned"`` → ``METHODS[name].tuned`` (steps, schedule, options)."""
    if name not in METHODS:
        raise MedreconError(f"unknown sampler {name!r}; available: {', '.join(METHODS)}")
    if preset == "official":
        return {"steps": METHODS[name].steps}
    if preset != "tuned":
        raise MedreconError(f"preset must be 'official' or 'tuned', received {preset!r}")
    if METHODS[name].tuned is None:
        with_tuned = [k for k, m in METHODS.items() if m.tuned is not None]
        raise MedreconError(f"{name} has no tuned preset; methods with one: {', '.join(with_tuned)}")
    return dict(METHODS[name].tuned)


@dataclass(frozen=True)
class Stats:
    """What a run cost: denoiser evaluations (one batched call = 1, summed over ``samples``), backward
    passes through the denoiser, and wall-clock seconds. With ``run(..., samples=K)``, ``samples`` is K and
    ``pixel_std`` the per-pixel standard deviation of the K samples (``[B, *ishape]``, real; the
    spread of the complex value for MRI), an uncertainty map; ``None`` for a single sample."""

    nfe: int
    backward_passes: int
    seconds: float
    samples: int = 1
    pixel_std: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts one pass through the denoiser output."""

    @staticmethod
    def forward(ctx, out: torch.Tensor, counter: "_Counted") -> torch.Tensor:  # type: ignore[override]
        ctx.counter = counter
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        ctx.counter.backward_passes += 1
        return grad, None


class _Counted:
    """Wraps a denoiser and counts its evaluations and the backward passes through it."""

    def __init__(self, denoiser: Callable) -> None:
        self.denoiser, self.nfe, self.backward_passes = denoiser, 0, 0

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        self.nfe += 1
        out = self.denoiser(x, sigma)
        return _CountBackward.apply(out, self) if out.requires_grad else out


def _schedule(method: Method, denoiser: Callable, steps: int, sigma_min: Optional[float],
              sigma_max: Optional[float], schedule: Optional[str]) -> torch.Tensor:
    kind = schedule or method.schedule
    lo = sigma_min if sigma_min is not None else getattr(denoiser, "sigma_min", None) or method.sigma_range[0]
    hi = sigma_max if sigma_max is not None else getattr(denoiser, "sigma_max", None) or method.sigma_range[1]
    if kind == "ve":
        return schedules.ve_geometric(steps, float(lo), float(hi))
    if kind == "vp":
        return schedules.vp_linear(steps)
    if kind == "karras":
        return schedules.karras(steps, float(lo), float(hi))
    raise MedreconError(f"schedule must be 've', 'vp' or 'karras', received {kind!r}")


def run(name: str, denoiser: Callable, operator: LinearOperator, y: torch.Tensor, noise_std: float = 0.0,
        steps: Optional[int] = None, generator: Generator = None, callback: Optional[Callable[[dict], None]] = None,
        start_from: Optional[torch.Tensor] = None, t0: Optional[float] = None, return_stats: bool = False,
        sigma_min: Optional[float] = None, sigma_max: Optional[float] = None, schedule: Optional[str] = None,
        coarse_to_fine: Optional[Any] = None, preset: str = "official", samples: int = 1, adapt: Any = None,
        **options: Any):
    """Reconstruct ``[B, *operator.ishape]`` images from measurements ``y`` (``[B, *operator.oshape]``).

    ``steps`` defaults to the method's official count; ``schedule`` ("ve", "vp", "karras") and the VE
    range (``sigma_min``/``sigma_max``; default the denoiser's attributes, else the official values)
    override the method's schedule. ``preset="tuned"`` takes the steps, schedule and options of the
    method's validated fast setting (``METHODS[name].tuned``, :data:`TUNED_NOTE`) wherever the call does not
    give them. ``generator``: one ``torch.Generator`` or one per batch item (then
    a batch equals the single runs). ``start_from`` + ``t0`` ∈ (0, 1]: CCDF warm start.
    ``coarse_to_fine={"factor": f, "until_sigma": σ, "data": "proxy"|"prior", "denoiser": D_coarse}``:
    the steps above σ run on f× smaller images (:mod:`.pyramid`; methods with ``Method.pyramid``). Extra
    ``options`` are the method's hyper-parameters (see each ``sample_<name>``).

    ``samples=K`` > 1 draws K independent samples (one after another, from the same ``generator``
    stream, so memory stays that of one run) and returns their mean, a Monte-Carlo estimate of the
    posterior mean E[x | y], the minimum-MSE estimate. For exact posterior samples x̂ and truth x both
    drawn from p(x | y), E‖x̂ − x‖² = 2·tr Cov(x | y), twice the MMSE; the mean of K samples has
    (1 + 1/K)·tr Cov(x | y), a gain of 10·log10(2K/(K + 1)) dB: 1.2 dB at K = 2, 2.0 at K = 4, 2.5 at
    K = 8. The gain is smaller for samplers whose samples vary less than the posterior (DDNM: +0.36 dB
    at K = 4 on the validation split, ``benchmarks/tune_fast.py``). Not a published method's setting:
    SNIPS (Kawar et al. 2021) shows the mean and per-pixel spread of its samples; here any sampler can.
    ``Stats.pixel_std`` carries the per-pixel standard deviation, an uncertainty map (calibrated only
    for a sampler that samples the posterior). NFE and time are K runs'; ``callback`` infos gain
    ``"sample": k``.

    ``adapt=True`` (or a dict of :class:`.adapt.Adaptation` options) adapts the prior to ``y`` while sampling:
    Steerable Conditional Diffusion (Barbano et al. 2023), low-rank updates of the network fitted to the
    measurement at chosen steps (:mod:`.adapt`; official: rank 8, 16 Adam iterations at 8 of 100 steps).
    Needs a network prior and a σ-schedule sampler; not with ``coarse_to_fine``. The prior is unchanged
    afterwards; NFE and backward passes include the adaptation's. Each of ``samples`` adapts afresh.

    Returns the images, or ``(images, Stats)`` with ``return_stats=True``.
    """
    if name not in METHODS:
        raise MedreconError(f"unknown sampler {name!r}; available: {', '.join(METHODS)}")
    method = METHODS[name]
    if not isinstance(y, torch.Tensor) or tuple(y.shape[1:]) != operator.oshape or y.ndim != len(operator.oshape) + 1:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise MedreconError(f"y must have shape [B, {', '.join(map(str, operator.oshape))}] for {operator!r}, received {shape}")
    if not noise_std >= 0:
        raise MedreconError(f"noise_std must be >= 0, received {noise_std}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise MedreconError(f"samples must be a positive integer (the number of posterior samples averaged), received {samples!r}")
    settings = preset_settings(name, preset)
    preset_steps, preset_schedule = settings.pop("steps", None), settings.pop("schedule", None)
    steps = steps if steps is not None else preset_steps
    schedule = schedule if schedule is not None else preset_schedule
    options = {**settings, **options}
    if (start_from is None) != (t0 is None):
        raise MedreconError("the CCDF warm start needs both start_from (an initial image) and t0 in (0, 1]")
    accepted = set(inspect.signature(method.fn).parameters) - {"denoiser", "operator", "y", "sigmas", "noise_std",
                                                              "generator", "callback", "x_init"}
    unknown = set(options) - accepted
    if unknown:
        raise MedreconError(f"{name} does not take {sorted(unknown)}; its options are {sorted(accepted)}")
    if method.noise == "damped" and options.get("damped") is False and noise_std > 0 \
            and not _partial_isometry(operator, y):
        warnings.warn(HARD_PROJECTION_WARNING.format(name=name), stacklevel=2)
    sigmas = _schedule(method, denoiser, int(steps or method.steps), sigma_min, sigma_max, schedule)
    if t0 is not None:
        sigmas = schedules.truncate(sigmas, float(t0))
    spec = network = None
    if adapt is not None and adapt is not False:
        spec = Adaptation.parse(adapt)
        if coarse_to_fine is not None or not method.pyramid:
            raise MedreconError(f"adapt needs a σ-schedule sampler without coarse_to_fine ({name}"
                                f"{' with coarse_to_fine' if coarse_to_fine is not None else ''} is not)")
        network = network_of(denoiser)
        adapt_levels = [float(sigmas[i]) for i in spec.steps(len(sigmas) - 1)]
    counted = _Counted(denoiser if network is None else network)  # adapting: the network runs eagerly
    coarse_counted = _Counted(denoiser)
    if coarse_to_fine is not None:
        if not method.pyramid:
            raise MedreconError(f"{name} does not support coarse_to_fine (not a σ-schedule sampler)")
        ctf = _parse_coarse_to_fine(coarse_to_fine, operator.ishape)
        coarse_counted = _Counted(ctf.denoiser or denoiser)
        ctf = dataclasses.replace(ctf, denoiser=coarse_counted)
    tic = time.perf_counter()
    total = total_sq = None
    run_callback = callback
    for k in range(samples):
        if callback is not None and samples > 1:  # progress names the sample: {"sample": k, "i": its step}
            run_callback = (lambda info, k=k: callback({**info, "sample": k}))
        if coarse_to_fine is None:
            den = counted if spec is None else Adapted(counted, network, operator, y, adapt_levels, spec)
            try:
                x = method.fn(den, operator, y, sigmas, noise_std=float(noise_std), generator=generator,
                              callback=run_callback, x_init=start_from, **{**method.defaults, **options})
            finally:
                if spec is not None:
                    den.close()
        else:
            x = _coarse_to_fine(method.fn, counted, operator, y, sigmas, ctf, noise_std=float(noise_std),
                                generator=generator, callback=run_callback, x_init=start_from,
                                options={**method.defaults, **options}, needs=method.needs)
        if samples > 1:  # running sums in float64: the mean and spread of K samples
            xd = x.detach().to(torch.complex128 if x.is_complex() else torch.float64)
            total = xd if total is None else total + xd
            total_sq = xd.abs() ** 2 if total_sq is None else total_sq + xd.abs() ** 2
    pixel_std = None
    if samples > 1:
        mean = total / samples
        pixel_std = ((total_sq / samples - mean.abs() ** 2).clamp_min(0) * samples / (samples - 1)).sqrt()
        x, pixel_std = mean.to(x.dtype), pixel_std.to(x.real.dtype)
    stats = Stats(counted.nfe + coarse_counted.nfe, counted.backward_passes + coarse_counted.backward_passes,
                  time.perf_counter() - tic, samples, pixel_std)
    return (x, stats) if return_stats else x


_OPERATORS = ("single-coil Cartesian MRI", "multi-coil MRI (SENSE)", "CT (parallel/fan Radon)")


def support_table() -> str:
    """Markdown table: which method runs on which operator, its data step and noise model."""
    cell = {"operator": ("yes", "yes", "yes"), "pinv": ("yes (exact A⁺)", "yes (CG A⁺)", "yes (CG A⁺)"),
            "svd": ("yes (SVD: V = Fᴴ, s = mask)", "no: needs an exact SVD", "no: needs an exact SVD")}
    rows = ["| method | paper | " + " | ".join(_OPERATORS) + " | measurement noise | CT data term | samples p(x|y) | "
            "official steps | `preset=\"tuned\"` |",
            "| --- | --- | " + " | ".join("---" for _ in _OPERATORS) + " | --- | --- | --- | --- | --- |"]
    for name, m in METHODS.items():
        noise = {"noisy": "σ_y-aware", "damped": "σ_y-aware by a damped projection (ours; published for y = Ax)"}[m.noise]
        claim = m.posterior_note or ('yes (small-step limit)' if m.posterior else 'no (approximate)')
        tuned = ", ".join(f"{k} {v}" for k, v in m.tuned.items()) if m.tuned else "–"
        data_term = "weighted (PWLS) with a dose" if m.weighted else "unweighted (measured better: samplers.WEIGHTED_NOTE)"
        rows.append(f"| `{name}` | {m.paper} | " + " | ".join(cell[m.needs]) + f" | {noise} | {data_term} | {claim} | "
                    f"{m.steps} | {tuned} |")
    return "\n".join(rows)
