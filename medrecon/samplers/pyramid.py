"""Coarse-to-fine sampling in the spirit of Pyramidal DDPM (Ryu & Ye, "Pyramidal Denoising Diffusion
Probabilistic Models", arXiv 2208.01864, 2022): the early, high-σ steps run on a ``factor``× smaller
image, the rest at full resolution.

    samplers.run("dps", D, A, y, steps=50, coarse_to_fine={"factor": 2, "until_sigma": 5.0})

Resolutions. ``M`` is the ``f×f`` block mean (full → coarse) and ``U`` the nearest-neighbour
replication (coarse → full), so ``M U = I`` and ``P = U M`` is the orthogonal projector onto
block-constant images (``P = U Uᵀ/f²``). A full-resolution state ``x_σ = x₀ + σ n`` has the coarse view
``M x_σ = M x₀ + σ M n`` with ``Cov(σ M n) = (σ/f)² I``: the coarse image carries noise ``σ/f``. So the
levels ``σ_i > until_sigma`` (``k`` of the ``N`` steps) run as a coarse sampling problem on the levels
``σ_i/f``, and the denoiser is evaluated on the coarse image (a convolutional prior runs at any size;
``denoiser=`` gives a separate coarse prior, e.g. the exact prior of ``M x₀`` for a Gaussian).

Data consistency at low resolution (``data=``):

* ``"proxy"`` (default): the same method on the coarse problem ``y ≈ (A U) x_c + n``, i.e. the full
  operator applied to the upsampled coarse image (``A U`` has no exact SVD, so ``A⁺`` is CG; the
  SVD-only methods need ``"prior"``). The unresolved detail ``A(I − P)x₀`` is ignored (treated as
  part of the noise); it is small in the low-frequency data that drives the high-σ steps.
* ``"prior"``: the coarse steps are unconditional (DDPM ancestral steps on the coarse prior); data
  consistency starts at full resolution.

The switch. Every sampler starts from ``x_init + σ_0 n`` with its own fresh noise (the CCDF warm-start
contract of :func:`core.start`). So the coarse stage ends with its own final step to σ = 0 (taken from
``σ_{k-1}/f``; one coarse evaluation, so the total step and NFE count equals the full-resolution run),
giving a clean coarse estimate ``x̂_c``, and the full-resolution stage starts at ``σ_k`` from
``U x̂_c + σ_k n``: the whole noise, in every frequency band, is drawn afresh at exactly ``σ_k`` per real
component, so the noise level is correct by construction. (Carrying the noisy coarse state instead
would mean ``U x_c + σ_k (n − U M n)``: ``U x_c`` already holds the coarse-band noise ``σ_k² P`` and only
the missing high-frequency band ``σ_k²(I − P)`` is added; the samplers' start cannot take a noisy state,
and ``x_c`` would then be noisier than ``x̂_c`` while carrying the same information about ``x₀``.) The
approximation is in the clean part: ``U x̂_c`` lacks the detail band ``(I − P)x₀`` and replaces the coarse
band by an estimate; both errors are of the size of the image's detail/posterior variance, small
against ``σ_k²`` when ``until_sigma`` is well above the image's fine-scale amplitude.

Cost: a convolutional denoiser's cost scales with pixels, so the ``k`` coarse steps cost about
``1/f²`` of a full step (the wall-clock gain is ``1 − (k/N)(1 − 1/f²)`` of the network time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from medrecon import MedreconError
from medrecon.samplers import core
from physics.operator import LinearOperator

__all__ = ["CoarseToFine", "Upsample", "downsample", "parse", "split_index", "coarse_to_fine"]


class Upsample(LinearOperator):
    """``U``: nearest-neighbour replication ``[B, C, h, w] → [B, C, f·h, f·w]``; the adjoint ``Uᵀ`` is the
    ``f×f`` block sum, so ``Uᵀ/f²`` is the block mean ``M`` (:func:`downsample`) and ``M U = I``."""

    def __init__(self, coarse_shape: tuple, factor: int, domain: str = "complex") -> None:
        c, h, w = coarse_shape
        super().__init__((c, h, w), (c, h * factor, w * factor), idomain=domain)  # type: ignore[arg-type]
        self.factor = int(factor)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        b, c, h, w = y.shape
        return y.reshape(b, c, h // f, f, w // f, f).sum(dim=(3, 5))


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``M x``: the ``f×f`` block mean of ``[B, C, H, W]`` (H, W divisible by ``factor``)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))


@dataclass(frozen=True)
class CoarseToFine:
    """The option: resolution ``factor``, the level ``until_sigma`` above which steps run coarse, the
    coarse data step (``"proxy"`` or ``"prior"``) and an optional coarse ``denoiser``."""

    factor: int
    until_sigma: float
    data: str = "proxy"
    denoiser: Optional[Callable] = None


def parse(option: Any, image_shape: tuple) -> CoarseToFine:
    """Validate ``run(..., coarse_to_fine=...)`` (a dict or :class:`CoarseToFine`) against ``[C, H, W]``."""
    if isinstance(option, dict):
        unknown = set(option) - {"factor", "until_sigma", "data", "denoiser"}
        if unknown or "until_sigma" not in option:
            raise MedreconError("coarse_to_fine takes {'factor', 'until_sigma', 'data', 'denoiser'} with until_sigma "
                                f"required, received keys {sorted(option)}")
        option = CoarseToFine(int(option.get("factor", 2)), float(option["until_sigma"]), option.get("data", "proxy"),
                              option.get("denoiser"))
    if not isinstance(option, CoarseToFine):
        raise MedreconError(f"coarse_to_fine must be a dict or CoarseToFine, received {type(option).__name__}")
    if len(image_shape) != 3:
        raise MedreconError(f"coarse_to_fine needs images [C, H, W], the operator takes {list(image_shape)}")
    f, (h, w) = option.factor, image_shape[-2:]
    if f < 2 or h % f or w % f:
        raise MedreconError(f"coarse_to_fine factor must be an integer >= 2 dividing the image size {h}x{w}, received {f}")
    if not option.until_sigma > 0:
        raise MedreconError(f"coarse_to_fine until_sigma must be > 0, received {option.until_sigma}")
    if option.data not in ("proxy", "prior"):
        raise MedreconError(f"coarse_to_fine data must be 'proxy' or 'prior', received {option.data!r}")
    return option


def split_index(sigmas: torch.Tensor, until_sigma: float) -> int:
    """``k``: the number of leading levels with ``σ_i > until_sigma``; needs ``1 ≤ k < N``."""
    s = core.levels(sigmas)
    k = sum(1 for v in s[:-1] if v > until_sigma)
    if not 1 <= k < len(s) - 1:
        raise MedreconError(f"coarse_to_fine until_sigma={until_sigma} must lie inside the schedule "
                            f"(σ_0 = {s[0]:.4g}, σ_N-1 = {s[-2]:.4g}) so that both stages have a step; it leaves {k} "
                            f"of {len(s) - 1} steps coarse")
    return k


def _relay(callback: Optional[Callable[[dict], None]], offset: int, up: Optional[Upsample]):
    """Forward the stage's progress with global step numbers (coarse images upsampled by ``U``)."""
    if callback is None:
        return None

    def relay(info: dict) -> None:
        out = dict(info, i=info["i"] + offset)
        if up is not None:
            out.update(x=up.forward(info["x"]), denoised=up.forward(info["denoised"]),
                       resolution=tuple(info["x"].shape[-2:]))
        callback(out)
    return relay


def _prior_stage(denoiser: core.Denoiser, template: torch.Tensor, s: list[float], generator: core.Generator,
                 callback: Optional[Callable[[dict], None]]) -> torch.Tensor:
    """Unconditional DDPM ancestral steps (η = 1) on the coarse levels ``s`` (ending in 0)."""
    x = template + s[0] * core.randn(template, generator)
    for i in range(len(s) - 1):
        x0 = core.denoise(denoiser, x, s[i])
        x = core.ddim_step(x0, (x - x0) / s[i], s[i], s[i + 1], 1.0, generator)
        core.report(callback, i, s[i], x, x0)
    return x


def coarse_to_fine(fn: Callable[..., torch.Tensor], denoiser: core.Denoiser, operator: LinearOperator,
                   y: torch.Tensor, sigmas: torch.Tensor, option: CoarseToFine, *, noise_std: float,
                   generator: core.Generator, callback: Optional[Callable[[dict], None]],
                   x_init: Optional[torch.Tensor], options: dict, needs: str = "operator") -> torch.Tensor:
    """Run sampler ``fn`` coarse-to-fine (module docstring); returns ``[B, *operator.ishape]``.

    ``denoiser`` is used at full resolution and, unless ``option.denoiser`` is given, on the coarse
    images too. ``x_init`` (CCDF warm start) is block-averaged for the coarse stage.
    """
    f = option.factor
    k = split_index(sigmas, option.until_sigma)
    c, h, w = operator.ishape
    up = Upsample((c, h // f, w // f), f, operator.idomain)
    coarse_sigmas = torch.cat([sigmas[:k] / f, sigmas.new_zeros(1)])
    coarse_den = option.denoiser or denoiser
    coarse_init = None if x_init is None else downsample(core.template(operator, y, x_init), f)
    # coarse stage: the levels σ_i/f for σ_i > until_sigma, ending with a step to 0
    if option.data == "prior":
        template = core.template(operator @ up, y, coarse_init)
        x_c = _prior_stage(coarse_den, template, core.levels(coarse_sigmas), generator, _relay(callback, 0, up))
    else:
        if needs == "svd":
            raise MedreconError("coarse_to_fine with data='proxy' runs the method on A∘U, which has no exact SVD; "
                                "use data='prior' for the SVD methods")
        x_c = fn(coarse_den, operator @ up, y, coarse_sigmas, noise_std=noise_std, generator=generator,
                 callback=_relay(callback, 0, up), x_init=coarse_init, **options)
    # full resolution from U x̂_c + σ_k n (the sampler's own start draws the noise)
    return fn(denoiser, operator, y, sigmas[k:], noise_std=noise_std, generator=generator,
              callback=_relay(callback, k, None), x_init=up.forward(x_c.detach()), **options)
