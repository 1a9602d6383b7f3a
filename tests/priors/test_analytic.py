"""Analytic priors: exact denoisers, samples, densities and the closed-form linear-Gaussian posterior.

Everything is compared with an independent computation: dense linear algebra in the information
form, torch.distributions, numerical quadrature, or Monte-Carlo within ~4 standard errors.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from medrecon import MedreconError
from medrecon.noise import randn_like
from medrecon.priors import Gaussian, GaussianMixture
from physics import LinearOperator

F64, C128 = torch.float64, torch.complex128


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_cov(n: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.randn(n, rank or n, dtype=F64, generator=gen(seed))
    return g @ g.T / (rank or n) + (0 if rank else 0.05) * torch.eye(n, dtype=F64)


def stationary(shape=(4, 6), seed=0):
    """A symmetric spectrum |fft2(kernel)|² + floor and the circulant covariance it defines (built by index)."""
    kernel = np.random.default_rng(seed).standard_normal(shape)
    spectrum = np.abs(np.fft.fft2(kernel)) ** 2 + 0.1
    c = np.fft.ifft2(spectrum).real
    H, W = shape
    idx = [(i, j) for i in range(H) for j in range(W)]
    cov = np.array([[c[(p[0] - q[0]) % H, (p[1] - q[1]) % W] for q in idx] for p in idx])
    return torch.tensor(spectrum), torch.tensor(cov)


class Matrix(LinearOperator):
    """y = M x for x [*ishape] flattened; M [m, n] (or [B, m, n] per batch item)."""

    def __init__(self, M: torch.Tensor, ishape, idomain="complex", odomain=None):
        batch = M.shape[0] if M.ndim == 3 else None
        super().__init__(ishape, (M.shape[-2],), idomain=idomain, odomain=odomain, batch=batch)
        self.M = M

    def _forward(self, x):
        x = x.reshape(x.shape[0], -1, 1)
        return (self.M @ (x.to(self.M.dtype) if self.M.is_complex() else x)).squeeze(-1)

    def _adjoint(self, y):
        Mh = self.M.conj().transpose(-1, -2)
        x = (Mh @ y.reshape(y.shape[0], -1, 1).to(Mh.dtype)).squeeze(-1)
        return (x if self.idomain == "complex" else x.real).reshape((y.shape[0],) + self.ishape)


def real_rep(M: torch.Tensor, complex_input: bool) -> torch.Tensor:
    """[re; im] representation of a complex matrix acting on a complex (or real) vector."""
    if not complex_input:
        return torch.cat([M.real, M.imag], dim=-2)
    top = torch.cat([M.real, -M.imag], dim=-1)
    bottom = torch.cat([M.imag, M.real], dim=-1)
    return torch.cat([top, bottom], dim=-2)


# ------------------------------------------------------------------------------------------------
# Gaussian denoiser
@pytest.mark.parametrize("is_complex", [False, True])
def test_dense_gaussian_denoiser_is_the_linear_mmse(is_complex):
    shape, n = (2, 2, 3), 12
    cov = random_cov(n, 1, rank=7)  # singular on purpose
    mean = torch.randn(shape, dtype=C128 if is_complex else F64, generator=gen(2))
    prior = Gaussian(mean, cov=cov)
    x = randn_like(torch.empty((3,) + shape, dtype=mean.dtype), gen(3))
    sigma = torch.tensor([0.1, 0.7, 3.0], dtype=F64)
    out = prior(x, sigma)
    for b in range(3):
        # μ + C (C + σ²I)⁻¹ (x − μ), applied to re and im alike.
        r = (x[b] - mean).reshape(-1)
        rhs = torch.stack([r.real, r.imag], 1) if is_complex else r[:, None]
        est = cov @ torch.linalg.solve(cov + sigma[b] ** 2 * torch.eye(n, dtype=F64), rhs)
        est = torch.complex(est[:, 0], est[:, 1]) if is_complex else est[:, 0]
        torch.testing.assert_close(out[b], mean + est.reshape(shape))
    torch.testing.assert_close(prior(x, 0.0), x)  # σ = 0: the identity on the support
    assert prior(x.to(torch.complex64 if is_complex else torch.float32), 0.5).dtype == (torch.complex64 if is_complex else torch.float32)


def test_one_pixel_gaussian_denoiser_by_quadrature():
    mu, s, sigma, x = 0.3, 0.5, 0.4, 1.1
    grid = torch.linspace(mu - 12 * s, mu + 12 * s, 200001, dtype=F64)
    w = torch.exp(-0.5 * ((grid - mu) / s) ** 2 - 0.5 * ((x - grid) / sigma) ** 2)
    brute = float((grid * w).sum() / w.sum())
    prior = Gaussian(torch.tensor([[[mu]]], dtype=F64), cov=torch.tensor([[s**2]], dtype=F64))
    assert prior(torch.tensor([[[[x]]]], dtype=F64), sigma).item() == pytest.approx(brute, rel=1e-9)


@pytest.mark.parametrize("is_complex", [False, True])
def test_spectrum_path_equals_dense_path(is_complex):
    spectrum, cov = stationary((4, 6), seed=4)
    dtype = C128 if is_complex else F64
    mean = torch.randn((1, 4, 6), dtype=dtype, generator=gen(5))
    fft_prior, dense_prior = Gaussian(mean, spectrum=spectrum), Gaussian(mean, cov=cov)
    torch.testing.assert_close(fft_prior.covariance(), cov)
    x = randn_like(torch.empty((2, 1, 4, 6), dtype=dtype), gen(6))
    sigma = torch.tensor([0.2, 1.5], dtype=F64)
    torch.testing.assert_close(fft_prior(x, sigma), dense_prior(x, sigma))
    torch.testing.assert_close(fft_prior.log_prob(x), dense_prior.log_prob(x))
    torch.testing.assert_close(fft_prior.log_prob(x, sigma), dense_prior.log_prob(x, sigma))


def test_spectrum_prior_with_several_channels_treats_them_independently():
    spectrum, cov = stationary((4, 4), seed=7)
    mean = torch.randn((2, 4, 4), dtype=F64, generator=gen(8))
    x = torch.randn((1, 2, 4, 4), dtype=F64, generator=gen(9))
    dense = Gaussian(mean, cov=torch.block_diag(cov, cov))
    torch.testing.assert_close(Gaussian(mean, spectrum=spectrum)(x, 0.6), dense(x, 0.6))


def test_spectrum_scales_to_64x64():
    f = torch.fft.fftfreq(64, dtype=F64)
    spectrum = 1.0 / (1e-3 + f[:, None] ** 2 + f[None, :] ** 2)
    prior = Gaussian(torch.zeros((1, 64, 64), dtype=C128), spectrum=spectrum)
    x = prior.sample(4, gen(10))
    assert x.shape == (4, 1, 64, 64) and x.dtype == C128
    assert prior(x + 0.1 * randn_like(x, gen(11)), 0.1).shape == x.shape


# ------------------------------------------------------------------------------------------------
# samples and densities
@pytest.mark.parametrize("use_spectrum", [False, True])
def test_samples_have_the_prior_mean_and_covariance(use_spectrum):
    spectrum, cov = stationary((2, 3), seed=12)
    mean = torch.randn((1, 2, 3), dtype=C128, generator=gen(13))
    prior = Gaussian(mean, spectrum=spectrum) if use_spectrum else Gaussian(mean, cov=cov)
    n = 40000
    x = prior.sample(n, gen(14)).reshape(n, -1)
    for part, mu in ((x.real, mean.real.reshape(-1)), (x.imag, mean.imag.reshape(-1))):
        centred = part - mu
        se = (torch.diagonal(cov) / n).sqrt()
        assert (centred.mean(0).abs() < 4 * se).all()
        emp = centred.T @ centred / n
        se_cov = ((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None, :] + cov**2) / n).sqrt()
        assert ((emp - cov).abs() < 4.5 * se_cov).all()
    cross = (x.real - mean.real.reshape(-1)).T @ (x.imag - mean.imag.reshape(-1)) / n  # re ⟂ im
    assert (cross.abs() < 4.5 * (torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None, :] / n).sqrt()).all()
    torch.testing.assert_close(prior.sample(3, gen(1)), prior.sample(3, gen(1)))


def test_log_prob_matches_torch_distributions():
    cov = random_cov(6, 15)
    mean = torch.randn((1, 2, 3), dtype=C128, generator=gen(16))
    prior = Gaussian(mean, cov=cov)
    x = prior.sample(5, gen(17))
    for sigma in (0.0, 0.3):
        mvn_re = MultivariateNormal(mean.real.reshape(-1), cov + sigma**2 * torch.eye(6, dtype=F64))
        mvn_im = MultivariateNormal(mean.imag.reshape(-1), cov + sigma**2 * torch.eye(6, dtype=F64))
        expected = mvn_re.log_prob(x.real.reshape(5, -1)) + mvn_im.log_prob(x.imag.reshape(5, -1))
        torch.testing.assert_close(prior.log_prob(x, sigma), expected)
    singular = Gaussian(mean, cov=random_cov(6, 15, rank=2))
    with pytest.raises(MedreconError, match="singular"):
        singular.log_prob(x)


def test_invalid_gaussians_are_rejected():
    with pytest.raises(MedreconError, match="exactly one"):
        Gaussian(torch.zeros(1, 2, 2))
    with pytest.raises(MedreconError, match=r"cov must be \[4, 4\]"):
        Gaussian(torch.zeros(1, 2, 2), cov=torch.eye(3))
    with pytest.raises(MedreconError, match="positive semi-definite"):
        Gaussian(torch.zeros(1, 2, 2), cov=-torch.eye(4))
    with pytest.raises(MedreconError, match="symmetric under k"):
        Gaussian(torch.zeros(1, 3, 3), spectrum=torch.arange(9.0).reshape(3, 3))
    prior = Gaussian(torch.zeros(1, 2, 2), cov=torch.eye(4))
    with pytest.raises(MedreconError, match=r"expected x of shape \[B, 1, 2, 2\], received \(1, 1, 3, 3\)"):
        prior(torch.zeros(1, 1, 3, 3), 0.1)
    with pytest.raises(MedreconError, match="this prior is real"):
        prior(torch.zeros(1, 1, 2, 2, dtype=torch.complex64), 0.1)


# ------------------------------------------------------------------------------------------------
# posterior
def information_form(Sigma, mu, A, y, s2):
    """Posterior by the precision (information) form: Σ_post = (Σ⁻¹ + AᵀA/s²)⁻¹, m = Σ_post(Σ⁻¹μ + Aᵀy/s²)."""
    P = torch.linalg.inv(Sigma)
    cov = torch.linalg.inv(P + A.T @ A / s2)
    return cov @ (P @ mu + A.T @ y / s2), cov


@pytest.mark.parametrize("is_complex", [False, True])
def test_posterior_matches_the_information_form(is_complex):
    shape, n, m = (1, 2, 3), 6, 4
    cov = random_cov(n, 20)
    dtype = C128 if is_complex else F64
    mean = torch.randn(shape, dtype=dtype, generator=gen(21))
    M = torch.randn(m, n, dtype=C128, generator=gen(22))
    op = Matrix(M, shape, idomain="complex" if is_complex else "real", odomain="complex")
    prior = Gaussian(mean, cov=cov)
    x = prior.sample(2, gen(23))
    noise_std = torch.tensor([0.1, 0.5], dtype=F64)
    y = op(x) + noise_std[:, None] * randn_like(torch.empty(2, m, dtype=C128), gen(24))
    post = prior.posterior(op, y, noise_std)
    A = real_rep(M, is_complex)
    Sigma = torch.block_diag(cov, cov) if is_complex else cov
    mu = torch.cat([mean.real.reshape(-1), mean.imag.reshape(-1)]) if is_complex else mean.reshape(-1)
    for b in range(2):
        m_ref, c_ref = information_form(Sigma, mu, A, torch.cat([y[b].real, y[b].imag]), noise_std[b] ** 2)
        m_ref = torch.complex(m_ref[:n], m_ref[n:]) if is_complex else m_ref
        torch.testing.assert_close(post.mean[b], m_ref.reshape(shape))
        torch.testing.assert_close(post.cov[b], c_ref)
    assert post.mean.dtype == dtype
    expected_var = post.cov[0].diagonal()
    expected_var = expected_var[:n] + expected_var[n:] if is_complex else expected_var
    torch.testing.assert_close(post.variance[0], expected_var.reshape(shape))


def test_posterior_with_a_real_operator_and_per_item_geometry():
    spectrum, cov = stationary((2, 3), seed=30)
    mean = torch.randn((1, 2, 3), dtype=F64, generator=gen(31))
    M = torch.randn(2, 4, 6, dtype=F64, generator=gen(32))  # a different real matrix per batch item
    op = Matrix(M, (1, 2, 3), idomain="real")
    prior = Gaussian(mean, spectrum=spectrum)
    y = torch.randn(2, 4, dtype=F64, generator=gen(33))
    post = prior.posterior(op, y, 0.2)
    for b in range(2):
        m_ref, c_ref = information_form(cov, mean.reshape(-1), M[b], y[b], 0.04)
        torch.testing.assert_close(post.mean[b].reshape(-1), m_ref)
        torch.testing.assert_close(post.cov[b], c_ref)


def test_noiseless_posterior_reproduces_the_measurement():
    cov = random_cov(6, 40)
    prior = Gaussian(torch.zeros((1, 2, 3), dtype=F64), cov=cov)
    M = torch.randn(3, 6, dtype=F64, generator=gen(41))
    op = Matrix(M, (1, 2, 3), idomain="real")
    y = torch.randn(1, 3, dtype=F64, generator=gen(42))
    post = prior.posterior(op, y, 0.0)
    torch.testing.assert_close(M @ post.mean.reshape(-1), y[0])
    torch.testing.assert_close(M @ post.cov[0] @ M.T, torch.zeros(3, 3, dtype=F64), atol=1e-9, rtol=0)


def test_posterior_monte_carlo():
    """Joint draws (x, y): the error x − E[x|y] has the posterior covariance and is uncorrelated with y."""
    n, m, draws = 4, 3, 20000
    shape = (1, 2, 2)
    cov = random_cov(n, 50)
    mean = torch.randn(shape, dtype=C128, generator=gen(51))
    M = torch.randn(m, n, dtype=C128, generator=gen(52))
    op = Matrix(M, shape)
    prior = Gaussian(mean, cov=cov)
    x = prior.sample(draws, gen(53))
    y = op(x) + 0.3 * randn_like(torch.empty(draws, m, dtype=C128), gen(54))
    post = prior.posterior(op, y, 0.3)
    err = torch.cat([(x - post.mean).real.reshape(draws, -1), (x - post.mean).imag.reshape(draws, -1)], 1)
    target = post.cov[0]
    emp = err.T @ err / draws
    se = ((target.diagonal()[:, None] * target.diagonal()[None, :] + target**2) / draws).sqrt()
    assert (err.mean(0).abs() < 4 * (target.diagonal() / draws).sqrt()).all()
    assert ((emp - target).abs() < 4.5 * se).all()
    y_r = torch.cat([y.real, y.imag], 1)
    y_c = y_r - y_r.mean(0)
    corr = (err.T @ y_c / draws) / (err.std(0)[:, None] * y_c.std(0)[None, :])
    assert (corr.abs() < 4.5 / math.sqrt(draws)).all()


def test_posterior_rejects_mismatched_operators():
    prior = Gaussian(torch.zeros((1, 2, 2), dtype=C128), cov=torch.eye(4, dtype=F64))
    with pytest.raises(MedreconError, match="has 6 elements, the prior 4"):
        prior.posterior(Matrix(torch.eye(6, dtype=C128), (1, 2, 3)), torch.zeros(1, 6, dtype=C128), 0.1)
    with pytest.raises(MedreconError, match="complex input"):
        prior.posterior(Matrix(torch.eye(4, dtype=F64), (1, 2, 2), idomain="real"), torch.zeros(1, 4, dtype=F64), 0.1)


# ------------------------------------------------------------------------------------------------
# Gaussian mixture
def test_gmm_denoiser_by_quadrature_in_one_dimension():
    w, mus, vs = [0.2, 0.5, 0.3], [-1.0, 0.5, 2.0], [0.04, 0.25, 0.0]
    gmm = GaussianMixture(torch.tensor(w), torch.tensor(mus, dtype=F64).reshape(3, 1, 1, 1), torch.tensor(vs))
    sigma, xs = 0.35, torch.tensor([-1.3, 0.2, 1.4, 3.0], dtype=F64)
    grid = torch.linspace(-6, 7, 400001, dtype=F64)
    dx = grid[1] - grid[0]
    density = sum(wk * torch.exp(-0.5 * (grid - mk) ** 2 / vk) / math.sqrt(2 * math.pi * vk) for wk, mk, vk in zip(w[:2], mus[:2], vs[:2]))
    out = gmm(xs.reshape(4, 1, 1, 1), sigma).reshape(-1)
    for x, o in zip(xs.tolist(), out.tolist()):
        like = torch.exp(-0.5 * ((x - grid) / sigma) ** 2)
        like_atom = math.exp(-0.5 * ((x - mus[2]) / sigma) ** 2)  # the point mass (v = 0) at 2.0
        num = float((grid * density * like).sum() * dx) + w[2] * mus[2] * like_atom
        den = float((density * like).sum() * dx) + w[2] * like_atom
        assert o == pytest.approx(num / den, rel=1e-6)


def test_gmm_denoiser_log_prob_and_samples_in_many_dimensions():
    K, shape = 3, (1, 2, 2)
    means = torch.randn((K,) + shape, dtype=C128, generator=gen(60))
    w, v = torch.tensor([1.0, 2.0, 1.0]), torch.tensor([0.1, 0.3, 0.05], dtype=F64)
    gmm = GaussianMixture(w, means, v)
    x = randn_like(torch.empty((4,) + shape, dtype=C128), gen(61))
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=F64)
    out, logp = gmm(x, sigma), gmm.log_prob(x, sigma)
    for b in range(4):
        comps, logs = [], []
        for k in range(K):
            s = v[k] + sigma[b] ** 2
            r = torch.cat([means[k].real.reshape(-1), means[k].imag.reshape(-1)])
            xb = torch.cat([x[b].real.reshape(-1), x[b].imag.reshape(-1)])
            logs.append(math.log(w[k] / w.sum()) + MultivariateNormal(r, s * torch.eye(8, dtype=F64)).log_prob(xb))
            comps.append(means[k] + v[k] / s * (x[b] - means[k]))
        resp = torch.softmax(torch.stack(logs), 0)
        torch.testing.assert_close(out[b], sum(rk * ck for rk, ck in zip(resp, comps)))
        torch.testing.assert_close(logp[b], torch.logsumexp(torch.stack(logs), 0))
    samples = gmm.sample(30000, gen(62))
    assert samples.shape == (30000,) + shape and samples.dtype == C128
    nearest = ((samples[:, None] - means[None]).abs() ** 2).reshape(30000, K, -1).sum(-1).argmin(1)
    freq = torch.bincount(nearest, minlength=K) / 30000.0
    torch.testing.assert_close(freq, torch.tensor([0.25, 0.5, 0.25], dtype=freq.dtype), atol=0.02, rtol=0)


def test_gmm_rejects_bad_parameters():
    with pytest.raises(MedreconError, match=r"weights \[K\], means \[K, C, H, W\], variances \[K\]"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 1, 2, 2), torch.ones(2))
    with pytest.raises(MedreconError, match="weights must be > 0"):
        GaussianMixture(torch.tensor([1.0, -1.0]), torch.zeros(2, 1, 2, 2), torch.ones(2))
