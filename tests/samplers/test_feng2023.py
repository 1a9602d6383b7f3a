"""Feng et al. 2023 (medrecon/samplers/feng2023.py) on Gaussian priors, where everything is closed form.

Prior: ``medrecon.priors.Gaussian`` (exact denoiser and exact ``log_prob``) on 4×4 complex images with a
squared-exponential covariance; ``d = 32`` real unknowns.

* ODE log-density, exact divergence, RK4 with 64 steps on [0.01, 1000]: relative error against
  ``log p_{σ_min}(x)`` measured ≈ 1e-4 (discretisation plus the ``N(0, σ_max²I)`` terminal, ~1e-5 here);
  bound 5e-4.
* Hutchinson (Rademacher, one probe per solve), 100 independent solves of the same images (RK4, 32
  steps on [0.01, 200], bias ≤ 0.03 nats): the mean lies within 4 Monte-Carlo standard errors of the
  exact value (+0.05 nats for the discretisation).
* The flow on 4×4 complex masked Fourier (columns {0, 1, 3} of 4, σ_y = 0.3): a short, cheap training
  (see FLOW) against the exact posterior (``Gaussian.posterior``). The posterior mean error is measured in
  units of the posterior spread ``√tr Σ``; reverse-KL flows are mode-seeking and under-disperse before
  convergence (the official code trains 20 000 iterations), so the variance ratio has a wide, stated
  window. Measured with FLOW: mean error 0.27 (the starting point A⁺y: 0.76), variance ratio 0.37.
  Bounds: mean error ≤ 0.4 (1.5× measured) and ≤ half the starting error; variance ratio in [0.25, 1.2].
"""
from __future__ import annotations

import math

import pytest
import torch

import physics
from medrecon import MedreconError, priors
from medrecon.samplers.feng2023 import fit_feng2023, ode_log_prob
from tests.samplers.oracle import se_kernel

S = 4
FLOW = dict(iterations=150, particles=8, lr=2e-2, depth=4, init_std=0.5, ode_steps=3, solver="rk4",
            sigma_min=0.02, sigma_max=5.0, n_eval=2000)


def gaussian(length: float = 1.0) -> priors.Gaussian:
    ii, jj = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    mean = (torch.exp(-((ii - 1.5) ** 2 + (jj - 1.2) ** 2) / 4) * (1 + 0.5j)).reshape(1, S, S)
    return priors.Gaussian(mean, cov=se_kernel(S, S, length))


def test_ode_log_density_with_exact_divergence_matches_the_closed_form():
    prior = gaussian()
    x = prior.sample(3, torch.Generator().manual_seed(0))
    lp = ode_log_prob(prior, x, sigma_min=0.01, sigma_max=1000.0, steps=64, solver="rk4", divergence="exact")
    exact = prior.log_prob(x, sigma=0.01)
    assert float(((lp - exact) / exact).abs().max()) <= 5e-4, (lp, exact)


def test_hutchinson_estimate_is_unbiased_within_monte_carlo_error():
    prior, reps = gaussian(), 100
    x = prior.sample(2, torch.Generator().manual_seed(1))
    lp = ode_log_prob(prior, x.repeat(reps, 1, 1, 1), sigma_min=0.01, sigma_max=200.0, steps=32, solver="rk4",
                      probe="rademacher", generator=torch.Generator().manual_seed(2)).reshape(reps, 2)
    exact = prior.log_prob(x, sigma=0.01)
    se = lp.std(0) / math.sqrt(reps)
    assert bool(((lp.mean(0) - exact).abs() <= 4 * se + 0.05).all()), (lp.mean(0), exact, se)
    assert bool((lp.std(0) > 0).all())  # a real estimator, not the exact trace


def test_flow_posterior_mean_and_spread_against_the_exact_posterior():
    prior, sy = gaussian(0.7), 0.3
    op = physics.SingleCoilMRI(torch.tensor([1, 1, 0, 1.0], dtype=torch.float64), shape=(S, S))
    g = torch.Generator().manual_seed(3)
    y = op.forward(prior.sample(1, g)) + sy * op.forward(op.adjoint(torch.complex(
        *torch.randn(2, 1, 1, S, S, dtype=torch.float64, generator=g))))
    post = prior.posterior(op, y, sy)
    res = fit_feng2023(prior, op, y, noise_std=sy, generator=torch.Generator().manual_seed(0), **FLOW)
    spread = post.variance.sum().sqrt()
    mean_err = float((res.mean - post.mean).abs().pow(2).sum().sqrt() / spread)
    var_ratio = float(res.std.pow(2).sum() / post.variance.sum())
    start_err = float((op.adjoint(y) - post.mean).abs().pow(2).sum().sqrt() / spread)
    assert res.samples.shape == (1, 1, S, S) and res.losses.shape == (FLOW["iterations"], 1)
    assert mean_err <= 0.4 and mean_err <= 0.5 * start_err, (mean_err, var_ratio, start_err)
    assert 0.25 <= var_ratio <= 1.2, (mean_err, var_ratio)


def test_bad_input_is_named():
    prior = gaussian()
    op = physics.SingleCoilMRI(torch.ones(S, dtype=torch.float64), shape=(S, S))
    y = op.forward(prior.sample(1, torch.Generator().manual_seed(0)))
    with pytest.raises(MedreconError, match="noise_std > 0"):
        fit_feng2023(prior, op, y, noise_std=0.0, sigma_min=0.01, sigma_max=10.0, iterations=1)
    with pytest.raises(MedreconError, match="at most 2x2"):
        fit_feng2023(prior, op, y, noise_std=0.1, sigma_min=0.01, sigma_max=10.0, iterations=1, max_size=2)
    with pytest.raises(MedreconError, match="hutchinson"):
        ode_log_prob(prior, y.new_zeros(1, 1, 70, 70), sigma_min=0.01, sigma_max=1.0, divergence="exact")
