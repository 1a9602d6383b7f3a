"""Reconstruction guidance (Ho et al. 2022, Sec. 3.1) on the Gaussian oracle (tests/samplers/cases.py).

* The adjusted estimate is the paper's ``x̂₀ − (w_r α_t/2)∇_{z_t}‖y − A x̂₀‖²`` written in VE coordinates,
  ``x̂₀ − (w_r/2)∇_{x_t}‖·‖²``: checked to rounding against the closed form of the linear oracle denoiser
  ``D(x) = μ + S(x − μ)`` (``∂D/∂x = S`` symmetric), ``x̃₀ = D − w_r·S·Aᴴ(A D − y)``.
* Bias bound: 128 samples, 50 DDPM steps, σ_y = 0.1 on the 8×8 complex MRI problem. recguide is biased
  (point estimate of p(y|x_t) with variance σ_t²/w_r, no σ_y): measured se = 3.7 Monte-Carlo standard
  errors with these seeds; the bound 5.5 is 1.5× that, as for the other approximate methods in
  test_posterior.py. Without guidance (w_r = 0) the samples follow the prior and se exceeds 10.
"""
from __future__ import annotations

import torch

from medrecon import samplers
from tests.samplers.cases import mri_problem, score


class Recording:
    """The oracle denoiser, remembering its inputs."""

    def __init__(self, prior):
        self.prior, self.inputs = prior, []
        self.sigma_min, self.sigma_max = prior.sigma_min, prior.sigma_max

    def __call__(self, x, sigma):
        self.inputs.append((x.detach().clone(), float(torch.as_tensor(sigma).reshape(-1)[0])))
        return self.prior(x, sigma)


def test_adjusted_estimate_is_the_paper_weighting_in_ve_form():
    prior, op, y = mri_problem(0.1, 2)
    d, seen, w = Recording(prior), [], 1.7
    samplers.run("recguide", d, op, y, steps=3, weight=w, generator=torch.Generator().manual_seed(0),
                 callback=seen.append)
    x, sigma = d.inputs[1]  # the second step: a state that already saw guidance
    D = prior(x, sigma)
    expected = D - w * (prior(prior.mean + op.adjoint(op.forward(D) - y), sigma) - prior.mean)  # S·Aᴴ(AD − y)
    torch.testing.assert_close(seen[1]["denoised"], expected, rtol=1e-10, atol=1e-10)


def test_posterior_mean_bias_is_bounded_and_guidance_matters():
    prior, op, y = mri_problem(0.1, 128)
    run = lambda w: samplers.run("recguide", prior, op, y, noise_std=0.1, steps=50, weight=w,  # noqa: E731
                                 generator=torch.Generator().manual_seed(0))
    guided, free = score(run(1.0), prior, op, y, 0.1), score(run(0.0), prior, op, y, 0.1)
    assert guided["se"] <= 5.5, guided
    assert free["se"] > 10.0, free


def test_cost_is_one_forward_and_one_backward_per_step_also_under_no_grad():
    prior, op, y = mri_problem(0.1, 2)
    with torch.no_grad():  # as medrecon.recon calls the samplers
        _, stats = samplers.run("recguide", prior, op, y, noise_std=0.1, steps=7, return_stats=True,
                                generator=torch.Generator().manual_seed(0))
    assert (stats.nfe, stats.backward_passes) == (7, 7)
