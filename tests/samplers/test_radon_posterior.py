"""The samplers on the project's own CT operator: ``physics.Radon`` (8×8, 4 parallel views, 12 bins,
scaled to ‖A‖ = 1), against the exact Gaussian posterior (tests/samplers/oracle.py).

``test_posterior.py`` uses a dense projector with an exact SVD; here the operator has none, so every
method takes its CG pseudo-inverse path through the matched Radon pair (numba kernels on the CPU).
Bounds are the ones ``test_posterior.CONFIG`` states and justifies for its CT problem (in Monte-Carlo
standard errors); the methods listed all meet them here too (measured: song2022 7.2, scoresde 3.1, both
with σ_y = 0.1 through their damped projection; dps 8.3, dds 4.4, pigdm 5.9, ddnm 2.9). Annealed Langevin (se 5.4 at 100×3 steps) and RED-diff (a
point estimate, se 15) are checked on the dense problem only.
"""
from __future__ import annotations

import math

import pytest
import torch

from medrecon import samplers
from physics import ParallelBeam, Radon
from tests.samplers.cases import N, _mean, score
from tests.samplers.oracle import GaussianDenoiser, se_kernel
from tests.samplers.test_posterior import CONFIG, NOISELESS_BOUNDS

METHODS = ["song2022", "scoresde", "dps", "dds", "pigdm", "ddnm"]


def radon_problem(noise_std: float, batch: int):
    angles = torch.tensor([0.0, 45.0, 90.0, 135.0], dtype=torch.float64) * math.pi / 180
    radon = Radon(ParallelBeam(image_size=N, angles=angles, detectors=12))
    op = (1.0 / radon.norm(dtype=torch.float64, iterations=200)) * radon
    prior = GaussianDenoiser(_mean().reshape(1, 1, N, N), se_kernel(N, N, 1.5))
    g = torch.Generator().manual_seed(2)
    x_true = prior.mean + (torch.randn(1, N * N, dtype=torch.float64, generator=g)
                           @ torch.linalg.cholesky(prior.cov).T).reshape(1, 1, N, N)
    y = op.forward(x_true) + noise_std * torch.randn((1,) + op.oshape, dtype=torch.float64, generator=g)
    return prior, op, y.expand((batch,) + op.oshape).clone()


@pytest.mark.parametrize("name", METHODS)
def test_sampler_mean_on_physics_radon_against_the_exact_posterior(name):
    prior, op, y = radon_problem(0.1, 256)
    options, bound = CONFIG[name]
    x = samplers.run(name, prior, op, y, noise_std=0.1, generator=torch.Generator().manual_seed(0), **options)
    s = score(x, prior, op, y, 0.1)
    assert s["se"] <= bound["ct"], f"{name} on physics.Radon: {s}"


@pytest.mark.parametrize("name", ["song2022", "scoresde"])
def test_projection_methods_on_noiseless_radon_data(name):
    # noiseless data, the published step (δ = 0): measured se 0.7 (song2022) and 1.0 (scoresde)
    prior, op, y = radon_problem(0.0, 256)
    x = samplers.run(name, prior, op, y, noise_std=0.0, generator=torch.Generator().manual_seed(0), **CONFIG[name][0])
    s = score(x, prior, op, y, 0.0)
    assert s["se"] <= NOISELESS_BOUNDS[name]["ct"], f"{name} on physics.Radon: {s}"
