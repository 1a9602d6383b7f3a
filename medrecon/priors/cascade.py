"""A σ-split pair of priors: a low-resolution expert for high noise, the full-resolution prior below.

Why. A sampler lays out the image (where the object is, its outline, its large compartments) at
high noise, σ ≳ 1 for images of unit scale. There the MMSE denoiser ``E[x₀ | x₀ + σn]`` is smooth:
detail finer than a few pixels lies far below the noise. A full-resolution network trained with
EDM's ``ln σ ~ N(−1.2, 1.2²)`` sees such levels rarely (σ ≥ 5 in 1 % of its draws) and measurably
denoises them worse than the mean image does (``benchmarks/priors.py``, "high noise" table), so its
unconditional samples have textured tissue but no anatomical layout. Training the same network
longer at high σ needs a GPU; a small network at a quarter of the resolution learns the layout on a
CPU, because the problem it solves is sixteen times smaller.

What. For an image ``x`` of ``H × W`` pixels and the expert's training size ``s`` (its manifest's
``image_size``), let ``f = round(min(H, W) / s)`` and ``P`` the mean over ``f × f`` blocks
(:func:`medrecon.data.synthetic.block_mean`), ``U`` its nearest-neighbour upsampling. ``P`` maps
white noise of level σ to white noise of level σ/f, so with the expert ``D_c`` trained on ``P x₀``
(``medrecon train --pool f``)::

    D(x, σ) = U · D_c(P x, σ / f)     for σ > σ_switch,
    D(x, σ) = D_fine(x, σ)            otherwise.

``U·D_c(P x, σ/f)`` is the best estimate of ``x₀`` that is constant on blocks given ``P x`` (for any
``z``, ‖x₀ − U z‖² = ‖x₀ − U P x₀‖² + f²‖P x₀ − z‖²), so the expert is exact in the limit where
the denoiser's output has no detail below the block size, and what it drops is measured, not
assumed: σ_switch is chosen where its error falls below the fine prior's on held-out images
(``benchmarks/priors.py``, recorded in the manifest).

Prior art. Splitting the σ range between denoisers follows eDiff-I's ensemble of expert denoisers
(Balaji et al. 2022, "eDiff-I: Text-to-Image Diffusion Models with an Ensemble of Expert
Denoisers", Sec. 4); solving the high-noise part at low resolution follows cascaded diffusion
(Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image Generation"). We differ from
both: the experts are not conditioned on each other, the low-resolution expert is used inside the
same variance-exploding denoiser ``D(x, σ)`` (so every sampler uses the pair unchanged), and the
noise level seen by the expert follows exactly from the block mean.

A pair is shipped as a manifest ``{"arch": "coarse_to_fine", "fine": NAME, "coarse": NAME,
"sigma_switch": σ, "sha256": {NAME: hex, ...}}`` that :func:`medrecon.priors.load` resolves.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medrecon import MedreconError
from medrecon.priors.base import Sigma, sigma_tensor

__all__ = ["CoarseToFine", "block_factor"]


def block_factor(height: int, width: int, coarse_size: int) -> int:
    """The pooling factor ``f = max(1, round(min(H, W) / coarse_size))`` for an ``H × W`` image."""
    return max(1, int(round(min(height, width) / float(coarse_size))))


def _block_mean_padded(x: torch.Tensor, f: int) -> torch.Tensor:
    """:func:`~medrecon.data.synthetic.block_mean` (the training data's ``P``); sizes that ``f`` does not
    divide are first padded at the end by repeating the last row and column."""
    from medrecon.data.synthetic import block_mean  # the one definition; data is not loaded with priors

    h, w = x.shape[-2:]
    ph, pw = (-h) % f, (-w) % f
    if ph or pw:
        parts = torch.view_as_real(x).movedim(-1, 1).flatten(1, 2) if x.is_complex() else x
        parts = F.pad(parts, (0, pw, 0, ph), mode="replicate")
        if x.is_complex():
            parts = torch.view_as_complex(parts.unflatten(1, (2, -1)).movedim(1, -1).contiguous())
        x = parts
    return block_mean(x, f)


def _upsample(z: torch.Tensor, f: int, height: int, width: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by ``f`` (the adjoint of the block mean, times f²), cropped."""
    return z.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)[..., :height, :width]


class CoarseToFine(nn.Module):
    """``D(x, σ)``: the coarse expert above ``sigma_switch``, the fine prior at and below (module doc).

    Args:
        fine: the full-resolution prior (a :class:`~medrecon.priors.Prior`); every attribute that
            is not defined here (``complex``, ``manifest``, ``sigma_min``, ``fit_scaling``, …) is
            the fine prior's, so the pair goes wherever a prior goes.
        coarse: the low-resolution expert, trained on block means of the same data in the same
            value scale; its ``image_size`` sets the pooling factor.
        sigma_switch: the noise level (in the fine prior's units) above which the expert answers.
        name, manifest: of the pair (``load`` passes the pair's manifest file).
    """

    def __init__(self, fine: nn.Module, coarse: nn.Module, sigma_switch: float,
                 name: str = "coarse_to_fine", manifest: dict | None = None) -> None:
        super().__init__()
        if not (isinstance(sigma_switch, (int, float)) and math.isfinite(sigma_switch) and sigma_switch > 0):
            raise MedreconError(f"CoarseToFine: sigma_switch must be a positive number, received {sigma_switch!r}")
        for attr in ("complex", "channels"):
            if getattr(fine, attr, None) != getattr(coarse, attr, None):
                raise MedreconError(f"CoarseToFine: the fine and coarse priors differ in {attr!r} "
                                    f"({getattr(fine, attr, None)!r} vs {getattr(coarse, attr, None)!r})")
        size = getattr(coarse, "image_size", None)
        size = size[0] if isinstance(size, (list, tuple)) else size
        if not isinstance(size, int) or size < 1:
            raise MedreconError(f"CoarseToFine: the coarse prior needs an integer image_size, found {size!r}")
        scalings = [dict(getattr(p, "manifest", None) or {}).get("value_scaling") for p in (fine, coarse)]
        if None not in scalings and scalings[0] != scalings[1]:
            raise MedreconError(f"CoarseToFine: the fine and coarse priors were trained in other value scales "
                                f"({scalings[0]} vs {scalings[1]})")
        self.fine, self.coarse = fine, coarse
        self.coarse_size, self.sigma_switch = int(size), float(sigma_switch)
        self.name = name
        self.manifest = dict(manifest) if manifest is not None else {
            "name": name, "arch": "coarse_to_fine", "sigma_switch": self.sigma_switch,
            "fine": getattr(fine, "name", None), "coarse": getattr(coarse, "name", None)}
        if scalings[0] is not None:  # callers normalise images by manifest["value_scaling"], as for a Prior
            self.manifest.setdefault("value_scaling", scalings[0])

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules
        except AttributeError:
            if name in ("fine", "coarse", "_modules"):
                raise
            return getattr(self.fine, name)

    def map_experts(self, fn: Any) -> "CoarseToFine":
        """The same pair with ``fn(expert)`` for both experts (e.g. :class:`FastDenoiser`, which
        captures one CUDA graph per expert: a graph of the pair would freeze the σ switch)."""
        return CoarseToFine(fn(self.fine), fn(self.coarse), self.sigma_switch, name=self.name, manifest=self.manifest)

    def to(self, *args: Any, **kwargs: Any) -> "CoarseToFine":
        """``nn.Module.to``, also for experts that are wrappers rather than modules."""
        for role in ("fine", "coarse"):
            expert = self.__dict__.get(role)
            if expert is not None and hasattr(expert, "to"):
                self.__dict__[role] = expert.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def factor(self, x: torch.Tensor) -> int:
        """The pooling factor used for images shaped like ``x``."""
        return block_factor(x.shape[-2], x.shape[-1], self.coarse_size)

    def coarse_estimate(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``U · D_c(P x, σ / f)`` for every batch item (``sigma`` a ``[B]`` tensor)."""
        f = self.factor(x)
        z = self.coarse(_block_mean_padded(x, f), sigma / f)
        return _upsample(z, f, x.shape[-2], x.shape[-1])

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        s = sigma_tensor(sigma, x)
        if isinstance(sigma, (int, float)):  # decided on the host: no device synchronisation
            return self.coarse_estimate(x, s) if sigma > self.sigma_switch else self.fine(x, s)
        high = s > self.sigma_switch  # a tensor of levels: one read-back per call on a GPU
        if bool(high.all()):
            return self.coarse_estimate(x, s)
        if not bool(high.any()):
            return self.fine(x, s)
        out = torch.empty_like(x)
        out[high] = self.coarse_estimate(x[high], s[high]).to(x.dtype)
        out[~high] = self.fine(x[~high], s[~high]).to(x.dtype)
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sigma_switch={self.sigma_switch}, coarse_size={self.coarse_size}"
