"""Priors: the denoiser interface ``D(x, σ)``, the UNet score network, analytic priors, checkpoints.

    from medrecon import priors
    D = priors.load("mri")                      # trained prior (a Prior), D(x, sigma) -> x̂₀
    G = priors.Gaussian(mean, spectrum=s)       # exact MMSE denoiser of a Gaussian prior
    s = priors.score(D, x, sigma)               # (D(x, σ) − x) / σ²

Convention (DESIGN.md): ``x = x₀ + σ·n`` with ``n = medrecon.noise.randn_like`` (variance σ² per
real component); MRI images complex ``[B, 1, H, W]``, CT real ``[B, 1, H, W]``; ``sigma`` a float
or a ``[B]`` tensor. Any callable with that signature is a denoiser.
"""
from __future__ import annotations

from medrecon.priors.analytic import Gaussian, GaussianMixture, GaussianPosterior
from medrecon.priors.base import Denoiser, score, sigma_tensor
from medrecon.priors.cascade import CoarseToFine
from medrecon.priors.checkpoint import (
    Prior,
    ValueScale,
    available,
    checkpoints_dir,
    denormalize,
    fit_scaling,
    load,
    normalize,
    save,
    save_pair,
)
from medrecon.priors.edm import ComplexAsChannels, EDMPrecond, VPDenoiser
from medrecon.priors.fast import FastDenoiser
from medrecon.priors.unet import DEFAULT_CONFIG, UNet

__all__ = [
    "Denoiser", "score", "sigma_tensor",
    "UNet", "DEFAULT_CONFIG", "EDMPrecond", "ComplexAsChannels", "VPDenoiser",
    "Gaussian", "GaussianMixture", "GaussianPosterior",
    "Prior", "CoarseToFine", "FastDenoiser", "save", "save_pair", "load", "available", "checkpoints_dir",
    "ValueScale", "fit_scaling", "normalize", "denormalize",
]
