"""Analytic priors with exact denoisers: the oracles the samplers are tested against.

Both follow the VE convention of :mod:`medrecon.priors.base`: ``x = x₀ + σ·n`` with
``n = medrecon.noise.randn_like`` (variance σ² per real component). A complex prior means that
the real and imaginary parts of ``x₀`` are independent, each with the stated real distribution
(a circular prior), so every formula below acts on ``re`` and ``im`` alike. All arithmetic is in
float64; results come back in the input's dtype.

* :class:`Gaussian` — ``x₀ ~ N(μ, C)``; ``D(x, σ) = μ + C (C + σ²I)⁻¹ (x − μ)`` (the posterior mean
  of a Gaussian; e.g. Bishop, PRML, eq. 2.116). ``C`` is dense or circulant (stationary, given by
  its power spectrum and applied through the FFT). :meth:`Gaussian.posterior` gives the exact
  posterior of a linear inverse problem.
* :class:`GaussianMixture` — ``x₀ ~ Σ_k w_k N(μ_k, v_k I)``; ``D`` is the responsibility-weighted
  sum of the per-component Gaussian denoisers.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Union

import torch

from medrecon import MedreconError
from medrecon.noise import randn_like
from medrecon.priors.base import Sigma, sigma_tensor, sigma_view

__all__ = ["Gaussian", "GaussianMixture", "GaussianPosterior"]

#: the largest real unknown count for which :meth:`Gaussian.posterior` builds dense matrices
MAX_DENSE = 4096


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _check_image(x: torch.Tensor, shape: tuple, is_complex: bool, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise MedreconError(f"{who}: expected x of shape [B, {', '.join(map(str, shape))}], received {got}")
    if x.is_complex() != is_complex:
        kind = "complex" if is_complex else "real"
        raise MedreconError(f"{who}: this prior is {kind}, received x of dtype {x.dtype}")


def _to_real(v: torch.Tensor) -> torch.Tensor:
    """``[..., n]`` complex → ``[..., 2n]`` real ``[re, im]``; real input unchanged."""
    return torch.cat([v.real, v.imag], dim=-1) if v.is_complex() else v


class GaussianPosterior(NamedTuple):
    """Exact Gaussian posterior ``p(x | y)`` per batch item.

    ``mean``: ``[B, *image]`` (complex128 for a complex prior, else float64). ``cov``: ``[B, N, N]``
    float64 covariance of the real representation, ``N = n`` for real images and ``N = 2n`` ordered
    ``[re(x).flatten(), im(x).flatten()]`` for complex ones (n = pixels·channels).
    """

    mean: torch.Tensor
    cov: torch.Tensor

    @property
    def variance(self) -> torch.Tensor:
        """Per-pixel ``E|x − mean|²`` (``Var re + Var im`` for complex), shaped ``[B, *image]`` float64."""
        diag = self.cov.diagonal(dim1=-2, dim2=-1)
        n = self.mean[0].numel()
        if self.mean.is_complex():
            diag = diag[:, :n] + diag[:, n:]
        return diag.reshape(self.mean.shape)


class Gaussian:
    """Gaussian prior ``x₀ ~ N(mean, C)`` with exact MMSE denoiser, samples, density and posterior.

    Args:
        mean: image ``[C, H, W]`` (real or complex). A complex mean makes a circular prior: the real
            and imaginary parts of ``x₀ − mean`` are independent, each ``N(0, C)``.
        cov: dense ``[n, n]`` symmetric positive semi-definite covariance of one real component,
            ``n = C·H·W`` in ``mean.flatten()`` order.
        spectrum: ``[H, W]`` non-negative power spectrum in unshifted FFT order (``k = 0`` at
            ``[0, 0]``), symmetric under ``k → −k``; then ``C = F⁻¹ diag(spectrum) F`` per channel
            (channels independent), with ``F`` the orthonormal 2-D DFT, i.e. a real, stationary
            (circulant) covariance ``C[p, q] = c[(p − q) mod (H, W)]`` with ``c = ifft2(spectrum)``
            (NumPy's default 1/(HW) normalisation), e.g. ``spectrum = |fft2(kernel)|²`` for a
            real kernel.

    Exactly one of ``cov`` and ``spectrum`` is given. Eigen-quantities: ``λ`` (eigenvalues of a
    dense ``C``) or the spectrum values; every operation is "filter by a function of λ".
    """

    def __init__(self, mean: torch.Tensor, cov: Optional[torch.Tensor] = None, spectrum: Optional[torch.Tensor] = None) -> None:
        if (cov is None) == (spectrum is None):
            raise MedreconError("Gaussian: give exactly one of cov= and spectrum=")
        if mean.ndim != 3:
            raise MedreconError(f"Gaussian: mean must be an image [C, H, W], received shape {tuple(mean.shape)}")
        self.mean, self.dtype = _f64(mean), mean.dtype
        self.shape, self.complex, self.n = tuple(mean.shape), mean.is_complex(), mean.numel()
        if cov is not None:
            cov = torch.as_tensor(cov).to(torch.float64)
            if cov.shape != (self.n, self.n):
                raise MedreconError(f"Gaussian: cov must be [{self.n}, {self.n}] for a mean of shape {self.shape}, received {tuple(cov.shape)}")
            if not torch.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * float(cov.abs().max())):
                raise MedreconError("Gaussian: cov must be symmetric")
            lam, self.U = torch.linalg.eigh(cov)
            self.kind = "dense"
        else:
            lam = torch.as_tensor(spectrum).to(torch.float64)
            if lam.shape != self.shape[-2:]:
                raise MedreconError(f"Gaussian: spectrum must be [H, W] = {list(self.shape[-2:])}, received {tuple(lam.shape)}")
            mirrored = torch.roll(torch.flip(lam, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
            if not torch.allclose(lam, mirrored, rtol=1e-10, atol=1e-12 * float(lam.abs().max())):
                raise MedreconError("Gaussian: spectrum must be symmetric under k → −k (spectrum[i, j] = spectrum[-i, -j])")
            self.kind = "spectrum"
        if float(lam.min()) < -1e-10 * max(float(lam.abs().max()), 1e-300):
            raise MedreconError(f"Gaussian: the covariance must be positive semi-definite, smallest eigenvalue {float(lam.min()):.3e}")
        self.eigenvalues = lam.clamp_min(0)

    # -- the one primitive: multiply by f(C) ----------------------------------------------------
    def _filter(self, r: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``f(C) r`` for ``r [B, C, H, W]`` (float64/complex128); ``fn(λ)`` returns ``[B or 1, *λ.shape]``."""
        lam = self.eigenvalues.to(r.device)
        gain = fn(lam)
        if self.kind == "dense":
            U = self.U.to(r.device, r.dtype)
            coef = r.reshape(r.shape[0], -1) @ U
            return ((coef * gain) @ U.T).reshape(r.shape)
        out = torch.fft.ifft2(gain[:, None] * torch.fft.fft2(r, norm="ortho"), norm="ortho")
        return out if r.is_complex() else out.real

    def _coefficients(self, r: torch.Tensor) -> torch.Tensor:
        """Orthonormal eigen-coefficients of ``r`` (``Uᵀr`` or ``F r``), so ``Σ|coef|²/λ = rᵀC⁻¹r``."""
        if self.kind == "dense":
            return r.reshape(r.shape[0], -1) @ self.U.to(r.device, r.dtype)
        return torch.fft.fft2(r, norm="ortho")

    def _broadcast(self, v: torch.Tensor) -> torch.Tensor:
        """``[B]`` → shape broadcasting against ``λ`` with a leading batch axis."""
        return v.reshape((-1,) + (1,) * self.eigenvalues.ndim)

    # -- the denoiser ---------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """Exact MMSE denoiser ``μ + C (C + σ²I)⁻¹ (x − μ)`` (identity at σ = 0)."""
        _check_image(x, self.shape, self.complex, "Gaussian")
        s2 = self._broadcast(sigma_tensor(sigma, x).to(torch.float64) ** 2)
        mu = self.mean.to(x.device)
        gain = lambda lam: torch.where(lam + s2 > 0, lam / (lam + s2), torch.ones_like(lam + s2))
        return (mu + self._filter(_f64(x) - mu, gain)).to(x.dtype)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` exact prior samples ``μ + C^{1/2} z`` as ``[n, C, H, W]`` in the mean's dtype
        (on the generator's device, or the CPU)."""
        device = generator.device if generator is not None else self.mean.device
        z = randn_like(torch.empty((n,) + self.shape, dtype=self.mean.dtype, device=device), generator)
        x = self.mean.to(device) + self._filter(z, lambda lam: lam.sqrt()[None])
        return x.to(self.dtype)

    def log_prob(self, x: torch.Tensor, sigma: Sigma = 0.0) -> torch.Tensor:
        """``log p_σ(x)`` per item ``[B]`` float64: the density of ``x₀ + σn``, i.e. ``N(μ, C + σ²I)``
        per real component (both components for complex ``x``). Needs ``C + σ²I`` positive definite."""
        _check_image(x, self.shape, self.complex, "Gaussian.log_prob")
        var = self.eigenvalues.to(x.device)[None] + self._broadcast(sigma_tensor(sigma, x).to(torch.float64) ** 2)
        if bool((var <= 0).any()):
            raise MedreconError("Gaussian.log_prob: C + σ²I is singular; use σ > 0 or a positive-definite covariance")
        coef = self._coefficients(_f64(x) - self.mean.to(x.device))
        per_lam_channels = 1 if self.kind == "dense" else self.shape[0]
        parts = 2 if self.complex else 1
        quad = (coef.abs() ** 2 / (var if self.kind == "dense" else var[:, None])).reshape(x.shape[0], -1).sum(1)
        logdet = parts * per_lam_channels * torch.log(2 * math.pi * var).reshape(var.shape[0], -1).sum(1)
        return -0.5 * (quad + logdet)

    def covariance(self) -> torch.Tensor:
        """Dense ``[n, n]`` float64 covariance of one real component (built from the spectrum if needed)."""
        if self.kind == "dense":
            return (self.U * self.eigenvalues) @ self.U.T
        if self.n > MAX_DENSE:
            raise MedreconError(f"Gaussian.covariance: {self.n} unknowns exceed the dense limit {MAX_DENSE}")
        eye = torch.eye(self.n, dtype=torch.float64).reshape((self.n,) + self.shape)
        return self._filter(eye, lambda lam: lam[None]).reshape(self.n, self.n)

    # -- exact posterior of a linear inverse problem ---------------------------------------------
    def posterior(self, operator, y: torch.Tensor, noise_std: Union[float, torch.Tensor]) -> GaussianPosterior:
        """Exact posterior of ``x`` given ``y = A x + noise_std·n`` (``n`` per :mod:`medrecon.noise`).

        ``operator`` is a :class:`physics.LinearOperator` whose input has ``n`` elements (any
        ``ishape``), applied to float64/complex128 basis vectors to build its real representation
        ``A_r`` densely (``[re; im]`` stacking of complex inputs/outputs, at most
        :data:`MAX_DENSE` real unknowns). With prior covariance ``Σ`` (``C``, or ``diag(C, C)`` for
        a complex prior) and ``S = A_r Σ A_rᵀ + noise_std² I``:
        ``mean = μ + Σ A_rᵀ S⁻¹ (y − A μ)``, ``cov = Σ − Σ A_rᵀ S⁻¹ A_r Σ`` (Bishop, PRML, eq. 2.113–2.117).
        ``noise_std`` is a float or ``[B]``; 0 is allowed when ``S`` stays invertible (pseudo-inverse otherwise).
        """
        ishape = tuple(operator.ishape)
        if math.prod(ishape) != self.n:
            raise MedreconError(f"Gaussian.posterior: operator input {ishape} has {math.prod(ishape)} elements, the prior {self.n}")
        if self.complex and operator.idomain != "complex":
            raise MedreconError("Gaussian.posterior: a complex prior needs an operator with complex input")
        N = 2 * self.n if self.complex else self.n
        if N > MAX_DENSE:
            raise MedreconError(f"Gaussian.posterior: {N} real unknowns exceed the dense limit {MAX_DENSE}")
        B, device = y.shape[0], y.device
        A = self._dense_operator(operator, B, device)  # [1 or B, M, N]
        cov = self.covariance().to(device)
        Sigma = torch.block_diag(cov, cov) if self.complex else cov
        mu_r = _to_real(self.mean.to(device).reshape(1, -1))  # [1, N]
        y_r = _to_real(_f64(y).reshape(B, -1))  # [B, M]
        s2 = sigma_tensor(noise_std, y).to(torch.float64) ** 2
        SA = Sigma @ A.transpose(-1, -2)  # Σ Aᵀ  [.., N, M]
        S = A @ SA + s2[:, None, None] * torch.eye(A.shape[1], dtype=torch.float64, device=device)
        L, info = torch.linalg.cholesky_ex(S)
        if bool((info == 0).all()):
            solve = lambda rhs: torch.cholesky_solve(rhs, L)
        else:
            S_pinv = torch.linalg.pinv(S, hermitian=True)
            solve = lambda rhs: S_pinv @ rhs
        resid = y_r - (A @ mu_r[..., None]).squeeze(-1)
        mean_r = mu_r + (SA @ solve(resid[..., None])).squeeze(-1)
        post_cov = Sigma - SA @ solve(SA.transpose(-1, -2))
        post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
        mean = torch.complex(mean_r[:, : self.n], mean_r[:, self.n:]) if self.complex else mean_r
        return GaussianPosterior(mean.reshape((B,) + self.shape), post_cov.expand(B, N, N))

    def _dense_operator(self, operator, batch: int, device) -> torch.Tensor:
        """Real representation ``[1 or B, M, N]`` of the operator, float64."""
        ishape, n = tuple(operator.ishape), self.n
        basis = torch.eye(n, dtype=torch.float64, device=device)
        if operator.idomain == "complex":
            basis = basis.to(torch.complex128)
            if self.complex:
                basis = torch.cat([basis, 1j * basis])  # columns for re(x) then im(x)
        basis = basis.reshape((-1,) + ishape)
        if operator.batch is None:
            cols = _to_real(_f64(operator.forward(basis)).reshape(basis.shape[0], -1))  # [N, M]
            return cols.T[None]
        cols = [_to_real(_f64(operator.forward(e.expand((batch,) + ishape))).reshape(batch, -1)) for e in basis]
        return torch.stack(cols, dim=-1)


class GaussianMixture:
    """Isotropic Gaussian mixture ``x₀ ~ Σ_k w_k N(μ_k, v_k I)`` (per real component).

    Args:
        weights: ``[K]`` positive (normalised to sum 1).
        means: ``[K, C, H, W]`` real or complex (complex: re and im independent, each ``N(re/im μ_k, v_k I)``).
        variances: ``[K]`` non-negative ``v_k``.

    Denoiser: with ``s_k = v_k + σ²`` and ``d`` real dimensions, responsibilities
    ``r_k ∝ w_k N(x; μ_k, s_k I)`` and ``D(x, σ) = Σ_k r_k (μ_k + (v_k/s_k)(x − μ_k))``.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> None:
        w, v = torch.as_tensor(weights, dtype=torch.float64), torch.as_tensor(variances, dtype=torch.float64)
        if means.ndim != 4 or w.shape != (means.shape[0],) or v.shape != w.shape:
            raise MedreconError(
                f"GaussianMixture: expected weights [K], means [K, C, H, W], variances [K]; received "
                f"{tuple(w.shape)}, {tuple(means.shape)}, {tuple(v.shape)}"
            )
        if bool((w <= 0).any()) or bool((v < 0).any()):
            raise MedreconError(f"GaussianMixture: weights must be > 0 and variances ≥ 0, received {w.tolist()}, {v.tolist()}")
        self.log_weights = (w / w.sum()).log()
        self.means, self.variances, self.dtype = _f64(means), v, means.dtype
        self.shape, self.complex = tuple(means.shape[1:]), means.is_complex()
        self.dim = means[0].numel() * (2 if self.complex else 1)  # real dimensions d

    def _log_components(self, x: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log w_k + log N(x; μ_k, (v_k+σ²) I)`` as ``[B, K]`` and ``v_k + σ²`` as ``[B, K]``."""
        var = (self.variances.to(x.device)[None] + s2[:, None]).clamp_min(1e-300)
        diff = _f64(x)[:, None] - self.means.to(x.device)[None]
        dist2 = (diff.abs() ** 2).reshape(diff.shape[0], diff.shape[1], -1).sum(-1)
        logn = -0.5 * dist2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return self.log_weights.to(x.device)[None] + logn, var

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """Exact MMSE denoiser (class docstring)."""
        _check_image(x, self.shape, self.complex, "GaussianMixture")
        s2 = sigma_tensor(sigma, x).to(torch.float64) ** 2
        logits, var = self._log_components(x, s2)
        resp = torch.softmax(logits, dim=1)  # [B, K]
        shrink = self.variances.to(x.device)[None] / var  # v_k / s_k
        mu = self.means.to(x.device)
        view = lambda t: t.reshape(t.shape + (1,) * len(self.shape))
        est = view(shrink) * _f64(x)[:, None] + view(1 - shrink) * mu[None]
        return (view(resp) * est).sum(1).to(x.dtype)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` exact samples ``[n, C, H, W]`` in the means' dtype (on the generator's device, or the CPU)."""
        device = generator.device if generator is not None else self.means.device
        k = torch.multinomial(self.log_weights.exp().to(device), n, replacement=True, generator=generator)
        z = randn_like(torch.empty((n,) + self.shape, dtype=self.means.dtype, device=device), generator)
        std = self.variances.to(device)[k].sqrt().reshape((n,) + (1,) * len(self.shape))
        return (self.means.to(device)[k] + std * z).to(self.dtype)

    def log_prob(self, x: torch.Tensor, sigma: Sigma = 0.0) -> torch.Tensor:
        """``log p_σ(x)`` per item ``[B]`` float64 (mixture of ``N(μ_k, (v_k+σ²) I)``; needs v_k + σ² > 0)."""
        _check_image(x, self.shape, self.complex, "GaussianMixture.log_prob")
        s2 = sigma_tensor(sigma, x).to(torch.float64) ** 2
        if bool(((self.variances.to(x.device)[None] + s2[:, None]) <= 0).any()):
            raise MedreconError("GaussianMixture.log_prob: a component has v_k + σ² = 0 (a point mass has no density)")
        logits, _ = self._log_components(x, s2)
        return torch.logsumexp(logits, dim=1)
