"""The denoiser interface, EDM preconditioning, the complex mapping and the VP wrapper."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medrecon import MedreconError
from medrecon.noise import randn_like
from medrecon.priors import ComplexAsChannels, EDMPrecond, Gaussian, VPDenoiser, score, sigma_tensor


class Recorder(nn.Module):
    """F(x_in, c_noise) = 2·x_in + c_noise, remembering its inputs."""

    def forward(self, x_in, c_noise):
        self.x_in, self.c_noise = x_in, c_noise
        return 2 * x_in + c_noise[:, None, None, None]


def test_sigma_tensor_broadcasts_and_validates():
    x = torch.zeros(3, 1, 4, 4, dtype=torch.complex128)
    s = sigma_tensor(0.5, x)
    assert s.shape == (3,) and s.dtype == torch.float64 and torch.all(s == 0.5)
    assert sigma_tensor(torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1), x).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(MedreconError, match="B=3"):
        sigma_tensor(torch.ones(2), x)
    with pytest.raises(MedreconError, match="≥ 0"):
        sigma_tensor(-1.0, x)


def test_edm_coefficients_match_karras_table_1():
    pre = EDMPrecond(Recorder(), sigma_data=0.5)
    sigma = torch.tensor([0.5, 0.002, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = pre.coefficients(sigma)
    # Hand-evaluated at σ = σ_d = 0.5: c_skip = ½, c_out = σ_d/√2, c_in = 1/(σ_d√2), c_noise = ln(½)/4.
    assert c_skip[0].item() == pytest.approx(0.5)
    assert c_out[0].item() == pytest.approx(0.5 / math.sqrt(2))
    assert c_in[0].item() == pytest.approx(1 / (0.5 * math.sqrt(2)))
    assert c_noise[0].item() == pytest.approx(math.log(0.5) / 4)
    # Limits: σ → 0 gives D → x (c_skip → 1, c_out → 0); σ large gives c_skip → 0, c_out → σ_d.
    assert c_skip[1].item() == pytest.approx(1, abs=1e-4) and c_out[1].item() == pytest.approx(0.002, rel=1e-4)
    assert c_skip[2].item() == pytest.approx(0.25 / (6400.25)) and c_out[2].item() == pytest.approx(0.5, rel=1e-4)
    # Unit variance of the network input for data of std σ_d: c_in² (σ² + σ_d²) = 1.
    torch.testing.assert_close(c_in**2 * (sigma**2 + 0.25), torch.ones(3, dtype=torch.float64))


def test_edm_forward_is_c_skip_x_plus_c_out_F_of_c_in_x():
    net = Recorder()
    pre = EDMPrecond(net, sigma_data=0.7)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.3, 4.0], dtype=torch.float64)
    out = pre(x, sigma)
    sd = 0.7
    for b, s in enumerate(sigma.tolist()):
        c_skip, c_out, c_in, c_noise = sd**2 / (s**2 + sd**2), s * sd / math.sqrt(s**2 + sd**2), 1 / math.sqrt(s**2 + sd**2), math.log(s) / 4
        torch.testing.assert_close(net.x_in[b], c_in * x[b])
        assert net.c_noise[b].item() == pytest.approx(c_noise)
        torch.testing.assert_close(out[b], c_skip * x[b] + c_out * (2 * c_in * x[b] + c_noise))


def test_edm_at_sigma_zero_returns_x():
    pre = EDMPrecond(Recorder())
    x = torch.randn(1, 1, 3, 3)
    torch.testing.assert_close(pre(x, 0.0), x)


def test_complex_as_channels_maps_re_im_and_back():
    seen = {}

    def model(xr, sigma):
        seen["x"] = xr
        return xr * torch.tensor([1.0, -3.0])[None, :, None, None]  # scale re by 1, im by -3

    wrapper = ComplexAsChannels(model)
    x = torch.randn(2, 1, 5, 6, dtype=torch.complex64)
    out = wrapper(x, 0.1)
    assert seen["x"].shape == (2, 2, 5, 6) and seen["x"].dtype == torch.float32
    torch.testing.assert_close(seen["x"][:, 0], x.real[:, 0])
    torch.testing.assert_close(seen["x"][:, 1], x.imag[:, 0])
    torch.testing.assert_close(out, torch.complex(x.real, -3 * x.imag))
    torch.testing.assert_close(ComplexAsChannels.to_complex(ComplexAsChannels.to_channels(x)), x)
    real = torch.randn(2, 2, 5, 6)
    torch.testing.assert_close(wrapper(real, 0.1), real * torch.tensor([1.0, -3.0])[None, :, None, None])


def test_score_is_tweedie_for_a_gaussian():
    # x₀ ~ N(μ, s²I) ⇒ p_σ = N(μ, (s²+σ²)I) and ∇ log p_σ(x) = −(x − μ)/(s² + σ²).
    mean = torch.full((1, 3, 3), 0.4, dtype=torch.float64)
    prior = Gaussian(mean, cov=0.09 * torch.eye(9, dtype=torch.float64))
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(score(prior, x, 0.2), -(x - 0.4) / (0.09 + 0.04))
    with pytest.raises(MedreconError, match="sigma > 0"):
        score(prior, x, 0.0)


def _ddpm_alphas_cumprod(T: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)  # Ho et al. 2020, linear schedule
    return torch.cumprod(1 - betas, dim=0)


def _gaussian_eps_model(abar: torch.Tensor, mu: float, s2: float):
    """The exact ε-prediction E[ε | x_t] for x₀ ~ N(μ, s²I) per real channel, at integer or fractional t."""

    def eps(x_t, t):
        a = abar[t.round().long()] if t.is_floating_point() else abar[t]
        a = a.reshape(-1, 1, 1, 1).to(x_t.dtype)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * s2 + 1 - a)

    return eps


@pytest.mark.parametrize("timestep", ["nearest", "interpolate"])
def test_vp_wrapper_on_exact_eps_model_equals_the_ve_denoiser(timestep):
    abar = _ddpm_alphas_cumprod()
    mu, s2 = 0.3, 0.25
    vp = VPDenoiser(_gaussian_eps_model(abar, mu, s2), abar, timestep=timestep)
    ve = Gaussian(torch.full((2, 4, 4), mu, dtype=torch.float64), cov=s2 * torch.eye(32, dtype=torch.float64))
    t = torch.tensor([0, 10, 500, 999])
    sigma = ((1 - abar[t]) / abar[t]).sqrt()
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x + sigma.reshape(-1, 1, 1, 1) * randn_like(x)
    torch.testing.assert_close(vp(x, sigma), ve(x, sigma))
    # Complex images through the same wrapper pair (re and im as two VP channels).
    vpc = ComplexAsChannels(VPDenoiser(_gaussian_eps_model(abar, mu, s2), abar, timestep=timestep))
    vec = Gaussian(torch.full((1, 4, 4), mu + 1j * mu, dtype=torch.complex128), cov=s2 * torch.eye(16, dtype=torch.float64))
    xc = torch.complex(x[:, 0:1], x[:, 1:2])
    torch.testing.assert_close(vpc(xc, sigma), vec(xc, sigma))


def test_vp_sigma_to_t():
    abar = _ddpm_alphas_cumprod()
    log_s = ((1 - abar) / abar).sqrt().log()
    nearest = VPDenoiser(lambda x, t: x, abar, "nearest")
    interp = VPDenoiser(lambda x, t: x, abar, "interpolate")
    mid = ((log_s[100] + log_s[101]) / 2).exp()
    assert nearest.sigma_to_t(log_s[[0, 100, 999]].exp()).tolist() == [0, 100, 999]
    assert interp.sigma_to_t(mid[None]).item() == pytest.approx(100.5)
    assert interp.sigma_to_t(log_s[[0, 999]].exp()).tolist() == pytest.approx([0.0, 999.0])
    with pytest.raises(ValueError, match="timestep"):
        VPDenoiser(lambda x, t: x, abar, "linear")
