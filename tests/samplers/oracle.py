"""Exact-posterior oracle for the sampler tests, in float64 dense linear algebra.

A Gaussian prior ``x ~ N(μ, C)`` on an ``H×W`` image (complex images: re and im independent, each
``N(μ_re/im, C)``) has the exact MMSE denoiser ``D(x, σ) = μ + C(C + σ²I)⁻¹(x − μ)``, and with a
linear operator and Gaussian noise ``y = Ax + σ_y n`` (unit variance per real component) the
posterior is Gaussian with mean ``μ + K(y − Aμ)`` and covariance ``P − KAP``, ``K = PAᵀ(APAᵀ + σ_y²I)⁺``
(the pseudo-inverse gives the σ_y = 0 limit). Everything is computed on the real representation
``[Re x; Im x]`` with the operator turned into a dense real matrix by applying it to basis vectors —
independent of the sampler code under test.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import torch

from physics.operator import LinearOperator

F64 = torch.float64


def se_kernel(h: int, w: int, length: float, variance: float = 1.0, nugget: float = 0.02) -> torch.Tensor:
    """Squared-exponential pixel covariance (smooth images) plus a white nugget, ``[h·w, h·w]``."""
    ii, jj = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    p = torch.stack([ii.flatten(), jj.flatten()], 1)
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    return variance * torch.exp(-d2 / (2 * length**2)) + nugget * torch.eye(h * w, dtype=F64)


class GaussianDenoiser:
    """Exact denoiser of ``N(mean, C)`` (per real component for complex images); ``sigma`` float or ``[B]``."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, sigma_min: float = 0.01, sigma_max: float = 20.0):
        self.mean, self.cov = mean, cov
        self.evals, self.evecs = torch.linalg.eigh(cov)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def _shrink(self, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # v [B, n] real
        c = v @ self.evecs
        c = c * self.evals / (self.evals + sigma[:, None] ** 2)
        return c @ self.evecs.T

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=F64).reshape(-1).expand(x.shape[0])
        d = (x - self.mean.to(x.dtype)).reshape(x.shape[0], -1)
        if x.is_complex():
            d = d.to(torch.complex128)
            out = torch.complex(self._shrink(d.real, sigma), self._shrink(d.imag, sigma))
        else:
            out = self._shrink(d.to(F64), sigma)
        return (out.reshape(x.shape) + self.mean).to(x.dtype)

    def prior_cov_real(self, complex_: bool) -> torch.Tensor:
        return torch.block_diag(self.cov, self.cov) if complex_ else self.cov


def to_real(t: torch.Tensor) -> torch.Tensor:
    """``[B, …]`` → ``[B, d]`` real representation (re then im for complex)."""
    f = t.reshape(t.shape[0], -1)
    return torch.cat([f.real, f.imag], 1).to(F64) if f.is_complex() else f.to(F64)


def dense_real(op: LinearOperator) -> torch.Tensor:
    """The operator as a real matrix acting on the real representations."""
    n = math.prod(op.ishape)
    eye = torch.eye(n, dtype=F64).reshape((n,) + op.ishape)
    if op.idomain == "complex":
        eye = torch.cat([eye.to(torch.complex128), 1j * eye.to(torch.complex128)])
    return to_real(op.forward(eye)).T


def posterior(prior: GaussianDenoiser, op: LinearOperator, y: torch.Tensor, noise_std: float):
    """Exact posterior (mean ``[d]``, covariance ``[d, d]``) in the real representation, one item ``y[:1]``."""
    complex_ = op.idomain == "complex"
    A, P = dense_real(op), prior.prior_cov_real(complex_)
    mu = to_real(prior.mean.reshape((1,) + op.ishape).to(torch.complex128 if complex_ else F64))[0]
    K = P @ A.T @ torch.linalg.pinv(A @ P @ A.T + noise_std**2 * torch.eye(A.shape[0], dtype=F64), hermitian=True)
    return mu + K @ (to_real(y[:1])[0] - A @ mu), P - K @ A @ P


class DenseOperator(LinearOperator):
    """``x ↦ M x`` on flattened items (float64/complex128), with an exact SVD if ``with_svd``."""

    def __init__(self, matrix: torch.Tensor, ishape, oshape, domain: str = "real", with_svd: bool = True):
        super().__init__(ishape, oshape, idomain=domain)
        self.M, self.with_svd = matrix, with_svd

    def _forward(self, x):
        return (x.reshape(x.shape[0], -1).to(self.M.dtype) @ self.M.T).reshape((x.shape[0],) + self.oshape)

    def _adjoint(self, y):
        return (y.reshape(y.shape[0], -1).to(self.M.dtype) @ self.M.conj()).reshape((y.shape[0],) + self.ishape)

    def svd(self) -> Optional[SimpleNamespace]:
        if not self.with_svd:
            return None
        U, S, Vh = torch.linalg.svd(self.M)
        S = torch.where(S > 1e-10 * S.max(), S, torch.zeros_like(S))  # numerically zero → null space
        n, k = self.M.shape[1], S.numel()
        s = torch.cat([S, S.new_zeros(n - k)])[None]
        pad = lambda c: torch.cat([c[:, :k], c.new_zeros(c.shape[0], n - k)], 1)  # noqa: E731
        return SimpleNamespace(
            s=s, Vh=lambda x: x.reshape(x.shape[0], -1) @ Vh.T,
            V=lambda c: (c @ Vh.conj()).reshape((c.shape[0],) + self.ishape),
            Uh=lambda y: pad(y.reshape(y.shape[0], -1) @ U.conj()))


def sparse_view_matrix(n: int, angles_deg, det: int) -> torch.Tensor:
    """A small parallel-beam projector (nearest-bin line sums of pixel centres), scaled to ‖A‖ = 1."""
    c = (n - 1) / 2
    ii, jj = torch.meshgrid(torch.arange(n, dtype=F64), torch.arange(n, dtype=F64), indexing="ij")
    rows = []
    for a in angles_deg:
        th = math.radians(a)
        t = (jj - c) * math.cos(th) + (ii - c) * math.sin(th)
        b = torch.round(t / (n * math.sqrt(2) / det) + (det - 1) / 2).long().clamp(0, det - 1).flatten()
        rows.append(torch.nn.functional.one_hot(b, det).T.to(F64))
    M = torch.cat(rows)
    return M / torch.linalg.matrix_norm(M, 2)
