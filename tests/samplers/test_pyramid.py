"""Coarse-to-fine sampling (medrecon/samplers/pyramid.py) on the 8×8 Gaussian oracle.

The oracle prior lives at full resolution; the coarse stage needs the prior of the 4×4 block means
``M x₀ ~ N(Mμ, M C Mᵀ)``, exact here (:func:`coarse_prior`). One denoiser object serves both sizes and
records the sizes it was called with. What is tested:

* the schedule split: the k levels above ``until_sigma`` run on 4×4 images, the rest on 8×8; the total
  NFE equals the full-resolution run (same steps), and the denoiser's pixel work drops to
  ``(k/4 + N − k)/N`` of it (the wall-clock gain of a convolutional network; the oracle's own cost does
  not scale with pixels, so wall time is measured in benchmarks/pyramid.py instead);
* progress: one callback per step, numbered 0…N−1, full-resolution images throughout;
* the final samples' mean error in Monte-Carlo standard errors (128 samples, 50 DPS steps, σ_y = 0.1,
  until_sigma = 3, about half the steps coarse): measured se 4.1 without the option, 4.5 with the
  ``"proxy"`` data step and 5.2 with ``"prior"`` (unconditional coarse steps); the bound 7.5 is 1.5× the
  worst, as for the approximate methods in test_posterior.py;
* ``Upsample`` is the adjoint pair of ``f²·M`` and ``M U = I``; bad options are named.
"""
from __future__ import annotations

import pytest
import torch

from medrecon import MedreconError, samplers
from medrecon.samplers import schedules
from medrecon.samplers.pyramid import Upsample, downsample
from tests.samplers.cases import N, mri_problem, score
from tests.samplers.oracle import GaussianDenoiser

UNTIL = 3.0


def coarse_prior(prior: GaussianDenoiser, f: int = 2) -> GaussianDenoiser:
    """The exact prior of the block means ``M x₀``."""
    M = downsample(torch.eye(N * N, dtype=torch.float64).reshape(N * N, 1, N, N), f).reshape(N * N, -1).T
    return GaussianDenoiser(downsample(prior.mean, f), M @ prior.cov @ M.T)


class SizeRecorder:
    """Full-resolution oracle on 8×8 inputs, the exact coarse prior on 4×4 ones; records ``(H, W)``."""

    def __init__(self, prior: GaussianDenoiser):
        self.full, self.coarse, self.sizes = prior, coarse_prior(prior), []
        self.sigma_min, self.sigma_max = prior.sigma_min, prior.sigma_max

    def __call__(self, x, sigma):
        self.sizes.append(tuple(x.shape[-2:]))
        return (self.full if x.shape[-1] == N else self.coarse)(x, sigma)


def test_high_sigma_steps_run_coarse_with_the_same_nfe_and_less_pixel_work():
    prior, op, y = mri_problem(0.1, 2)
    d, steps = SizeRecorder(prior), 20
    k = int((schedules.vp_linear(steps)[:-1] > UNTIL).sum())
    _, stats = samplers.run("dps", d, op, y, noise_std=0.1, steps=steps, return_stats=True,
                            generator=torch.Generator().manual_seed(0),
                            coarse_to_fine={"factor": 2, "until_sigma": UNTIL})
    assert 1 <= k < steps
    assert d.sizes == [(4, 4)] * k + [(8, 8)] * (steps - k)
    assert (stats.nfe, stats.backward_passes) == (steps, steps)
    work = sum(h * w for h, w in d.sizes) / (steps * N * N)
    assert work == pytest.approx((k / 4 + steps - k) / steps)


def test_progress_is_numbered_across_both_stages_at_full_resolution():
    prior, op, y = mri_problem(0.1, 2)
    seen = []
    x = samplers.run("ddnm", SizeRecorder(prior), op, y, noise_std=0.1, steps=12, callback=seen.append,
                     generator=torch.Generator().manual_seed(0), coarse_to_fine={"factor": 2, "until_sigma": UNTIL})
    assert [s["i"] for s in seen] == list(range(12))
    assert all(s["x"].shape == x.shape and s["denoised"].shape == x.shape for s in seen)
    assert seen[0]["resolution"] == (4, 4) and "resolution" not in seen[-1]


@pytest.mark.parametrize("data", ["proxy", "prior"])
def test_final_samples_mean_error_stays_within_the_bound(data):
    prior, op, y = mri_problem(0.1, 128)
    x = samplers.run("dps", SizeRecorder(prior), op, y, noise_std=0.1, steps=50,
                     generator=torch.Generator().manual_seed(0),
                     coarse_to_fine={"factor": 2, "until_sigma": UNTIL, "data": data})
    s = score(x, prior, op, y, 0.1)
    assert s["se"] <= 7.5, s


def test_upsample_is_the_adjoint_pair_of_the_block_sum():
    up = Upsample((1, 4, 4), 2, "complex")
    assert up.check_adjoint(dtype=torch.float64) < 1e-12
    x = torch.randn(3, 1, 4, 4, dtype=torch.complex128)
    torch.testing.assert_close(downsample(up.forward(x), 2), x)


def test_bad_options_are_named():
    prior, op, y = mri_problem(0.1, 1)
    with pytest.raises(MedreconError, match="factor"):
        samplers.run("dps", prior, op, y, steps=4, coarse_to_fine={"factor": 3, "until_sigma": 1.0})
    with pytest.raises(MedreconError, match="until_sigma"):
        samplers.run("dps", prior, op, y, steps=4, coarse_to_fine={"factor": 2, "until_sigma": 1e6})
    with pytest.raises(MedreconError, match="data='prior'"):
        samplers.run("ddrm", prior, op, y, steps=4, coarse_to_fine={"factor": 2, "until_sigma": 1.0})
    with pytest.raises(MedreconError, match="does not support coarse_to_fine"):
        samplers.run("feng2023", prior, op, y, noise_std=0.1, steps=2, coarse_to_fine={"until_sigma": 1.0})
