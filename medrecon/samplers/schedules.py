"""Noise-level schedules. Each is a pure function returning a float64 tensor of VE noise levels
``σ_0 > σ_1 > … > σ_{N-1} > σ_N = 0`` (N steps, trailing zero as in k-diffusion's ``get_sigmas_*``).

Variance-exploding convention throughout (``x = x₀ + σ·n``); a VP/DDPM time ``t`` with cumulative
``ᾱ_t`` maps to ``σ_t = √((1 − ᾱ_t)/ᾱ_t)`` (the x_ve = x_vp/√ᾱ change of variables, DESIGN.md).
"""
from __future__ import annotations

import math

import torch

__all__ = ["karras", "ve_geometric", "vp_linear", "truncate", "truncated_steps", "time_travel"]


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if int(n) < 1:
        raise ValueError(f"a schedule needs at least 1 step, received steps={n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"expected 0 < sigma_min < sigma_max, received sigma_min={sigma_min}, sigma_max={sigma_max}")


def _with_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, s.new_zeros(1)])


def karras(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM schedule (Karras et al. 2022, eq. 5): ``σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``."""
    _check(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero((hi + ramp * (lo - hi)) ** rho)


def ve_geometric(n: int, sigma_min: float = 0.01, sigma_max: float = 378.0, eps: float = 1e-5) -> torch.Tensor:
    """Song et al. 2021 VE-SDE sampled at ``t = linspace(1, ε, N)``: ``σ(t) = σ_min (σ_max/σ_min)^t``."""
    _check(n, sigma_min, sigma_max)
    t = torch.linspace(1.0, eps, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
    return _with_zero(sigma_min * (sigma_max / sigma_min) ** t)


def vp_linear(n: int, beta_start: float = 1e-4, beta_end: float = 0.02, T: int = 1000) -> torch.Tensor:
    """DDPM linear-β schedule (Ho et al. 2020), T training steps, respaced to ``n`` steps as in DDIM/DDRM
    (``skip = T // n``, times ``range(0, T, skip)`` descending), mapped to VE ``σ_t = √((1 − ᾱ_t)/ᾱ_t)``.

    With the defaults σ runs from ≈157 (t = 999) down to 0.01 (t = 0).
    """
    if not 1 <= int(n) <= T:
        raise ValueError(f"vp_linear needs 1 <= steps <= T={T}, received steps={n}")
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    t = torch.arange(0, T, T // int(n))[: int(n)].flip(0)
    return _with_zero(((1 - alpha_bar[t]) / alpha_bar[t]).sqrt())


def truncate(sigmas: torch.Tensor, t0: float) -> torch.Tensor:
    """Keep the last ``t0`` fraction of a schedule (CCDF, Chung et al. 2022): start index
    ``round((1 − t0)·N)`` of the N nonzero levels, so ``t0 = 1`` keeps all and ``t0 → 0`` keeps one step."""
    n = sigmas.numel() - 1
    return sigmas[n - truncated_steps(n, t0):]


def truncated_steps(n: int, t0: float) -> int:
    """How many of ``n`` steps :func:`truncate` keeps: ``n − min(round((1 − t0)·n), n − 1)``."""
    if not 0 < t0 <= 1 or math.isnan(t0):
        raise ValueError(f"t0 must lie in (0, 1], received {t0}")
    return n - min(int(round((1 - t0) * n)), n - 1)


def time_travel(n: int, length: int = 1, repeat: int = 1) -> list[int]:
    """The visiting order of a schedule's levels with time travel (RePaint, Lugmayr et al. 2022, §4.2;
    DDNM, Wang et al. 2023, §3.3): positions into ``σ_0 > … > σ_{N−1} > σ_N = 0`` (``n`` = N).

    Counting time ``t = N − 1 − position`` as the papers do (t = N − 1 first, −1 for σ = 0), the walk
    goes down one level at a time; on reaching ``t`` ∈ {0, L, 2L, …} below ``N − L`` it goes back up
    ``L`` levels, ``repeat − 1`` times at each such ``t``. Every move is one level. A down move costs
    a denoiser evaluation, an up move none, so the cost is ``N + L·(repeat − 1)·⌈(N − L)/L⌉``
    evaluations. ``length = repeat = 1`` is the plain walk ``[0, 1, …, N]``.
    """
    if int(length) < 1 or int(repeat) < 1:
        raise ValueError(f"time travel needs length >= 1 and repeat >= 1, received length={length}, repeat={repeat}")
    n, length, repeat = int(n), int(length), int(repeat)
    left = {t: repeat - 1 for t in range(0, n - length, length)}  # returns still owed at time t
    t = n - 1
    times = [t]
    while t >= 0:
        t -= 1
        times.append(t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            for _ in range(length):
                t += 1
                times.append(t)
    return [n - 1 - t for t in times]
