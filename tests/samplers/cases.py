"""The two oracle problems of the sampler tests: 8×8 complex Cartesian MRI and an 8×8 sparse-view CT-like
projector (4 views × 12 bins, dense, CG pseudo-inverse unless the SVD is asked for)."""
from __future__ import annotations

import torch

import physics
from tests.samplers.oracle import DenseOperator, GaussianDenoiser, se_kernel, sparse_view_matrix, to_real, posterior

N = 8


def _mean() -> torch.Tensor:
    ii, jj = torch.meshgrid(torch.arange(N, dtype=torch.float64), torch.arange(N, dtype=torch.float64), indexing="ij")
    return torch.exp(-((ii - 3.5) ** 2 + (jj - 3.0) ** 2) / 8)


def mri_problem(noise_std: float, batch: int = 1):
    """Prior N(μ, C) on re and im; columns {0, 2, 3, 4, 6} of 8 sampled (k-space centre included)."""
    mask = torch.tensor([1, 0, 1, 1, 1, 0, 1, 0], dtype=torch.float64)
    op = physics.SingleCoilMRI(mask, shape=(N, N))
    prior = GaussianDenoiser((_mean() * (1 + 0.5j)).reshape(1, 1, N, N).to(torch.complex128), se_kernel(N, N, 1.5))
    g = torch.Generator().manual_seed(1)
    x_true = prior.mean + torch.complex(*(torch.randn(2, 1, 1, N * N, dtype=torch.float64, generator=g) @
                                          torch.linalg.cholesky(prior.cov).T)).reshape(1, 1, N, N)
    noise = torch.complex(*torch.randn(2, 1, 1, N, N, dtype=torch.float64, generator=g))
    y = op.forward(x_true) + noise_std * op.forward(op.adjoint(noise))  # noise only where sampled
    return prior, op, y.expand((batch,) + op.oshape).clone()


def ct_problem(noise_std: float, batch: int = 1, with_svd: bool = False):
    """Real prior N(μ, C); 4 views (0°, 45°, 90°, 135°) × 12 bins, ‖A‖ = 1."""
    M = sparse_view_matrix(N, [0, 45, 90, 135], 12)
    op = DenseOperator(M, (1, N, N), (1, 4, 12), "real", with_svd=with_svd)
    prior = GaussianDenoiser(_mean().reshape(1, 1, N, N), se_kernel(N, N, 1.5))
    g = torch.Generator().manual_seed(2)
    x_true = prior.mean + (torch.randn(1, N * N, dtype=torch.float64, generator=g) @
                           torch.linalg.cholesky(prior.cov).T).reshape(1, 1, N, N)
    y = op.forward(x_true) + noise_std * torch.randn((1,) + op.oshape, dtype=torch.float64, generator=g)
    return prior, op, y.expand((batch,) + op.oshape).clone()


def score(samples: torch.Tensor, prior, op, y, noise_std: float) -> dict:
    """Sample mean error in Monte-Carlo standard errors (‖m̂ − m‖ / √(tr Σ / N)), relative mean error
    ‖m̂ − m‖/‖m‖, and the variance ratio tr Ŝ / tr Σ."""
    m, S = posterior(prior, op, y, noise_std)
    r = to_real(samples)
    err = (r.mean(0) - m).norm()
    return {"se": float(err / (S.trace() / r.shape[0]).sqrt()), "rel": float(err / m.norm()),
            "var_ratio": float(r.var(0).sum() / S.trace())}
