"""Score-based priors for variational inference, Feng, Smith, Rubinstein, Chang, Bouman & Freeman,
"Score-Based Diffusion Models as Principled Priors for Inverse Imaging", ICCV 2023 (arXiv 2304.11751;
official JAX code ``berthyf96/score_prior``: ``probability_flow.py``, ``train_dpi.py``,
``posterior_sampling/realnvp_model.py``; the flow training is Deep Probabilistic Imaging, Sun & Bouman,
AAAI 2021).

Two parts:

1. **The prior's log-density** (:func:`ode_log_prob`) through the probability-flow ODE (Song et al.,
   ICLR 2021, eq. 13 and App. D.2). In the VE/EDM form ``dx/dσ = −σ∇log p_σ(x) = (x − D(x, σ))/σ``; with
   ``t = log σ`` this is ``dx/dt = x − D(x, σ)`` and the instantaneous change of variables gives
   ``d log p_σ(x(σ))/dt = −div(x − D) = −(d − tr ∂D/∂x)`` (``d`` real unknowns). Integrating from ``σ_min``
   (the image) to ``σ_max``::

       log p_{σ_min}(x) = log N(x(σ_max); 0, σ_max² I) + ∫_{log σ_min}^{log σ_max} (d − tr ∂D/∂x) dlog σ

   with a fixed-step Heun (2 evaluations per step) or RK4 (4 per step) solver on a grid uniform in
   ``log σ``. ``tr ∂D/∂x`` is the Hutchinson–Skilling estimate ``εᵀ(∂D/∂x)ε`` (one vector–Jacobian product
   per probe; Rademacher or Gaussian probes drawn once per solve, as in score_sde), or exact (``d``
   products; tiny images only). Default RK4 with 8 steps: on a 4×4 Gaussian test prior its log-density is
   within ~1–3 % (Heun with 16 steps, same cost: 6–9 %; RK4 with 64 steps: 1e-4). The terminal density ``N(0, σ_max² I)`` ignores the data's own spread, an
   error of order ``d·Var(x₀)/σ_max²`` nats.

2. **The variational posterior**: a RealNVP flow ``x = f_φ(z)``, ``z ~ N(0, I)`` on the image's real
   representation (``[re, im]`` channels for complex images), trained per measurement by Adam on
   ``KL(q_φ ‖ p(x|y)) = E_q[‖y − A x‖²/(2σ_y²) − log p(x) + log q_φ(x)] + const`` with reparameterised
   samples (``particles`` per iteration). The flow: ``depth`` affine coupling layers
   ``x_b ← x_b·exp(s(x_a)) + t(x_a)`` alternating checkerboard and (for 2 channels) channel masks, each
   ``s, t`` a small 3-layer 3×3 conv net (``hidden`` channels, SiLU, zero-initialised last layer, ``s``
   bounded by tanh), then an elementwise affine ``x = shift + exp(log_scale)·h`` initialised at
   ``shift = A⁺y`` (or the warm start) and ``exp(log_scale) = init_std``. One independent flow per batch
   item (grouped convolutions, per-item gradient clipping), so a batch equals single runs.

Deliberate differences from the official code: fixed-step Heun/RK4 with backpropagation through the
solver instead of adaptive Dopri5 with a backsolve adjoint; no batch norm in the couplings (plain
coupling nets and the output affine layer instead); a small default flow (official: 32 flow steps,
batch 64, 20 000 iterations, lr 1e-5 with 5 000 warm-up steps, 16 trace probes, gradient clip 1).

Cost (state it to users): each iteration solves the ODE for ``particles`` images with backpropagation
through every step: per iteration ``E = 2·ode_steps`` (Heun) or ``4·ode_steps`` (RK4) batched denoiser
evaluations, ``E·probes`` vector–Jacobian products with ``create_graph`` and one backward pass through all
of it — roughly ``4·E`` network evaluations of ``particles`` images. With the defaults (8 RK4 steps = 32 evaluations, 8
particles, 500 iterations) that is ≈ 64 000 evaluations of 8 images: hours for a 64×64 UNet on a CPU,
minutes on a GPU. Images larger than ``max_size²`` pixels are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from medrecon import MedreconError
from medrecon.samplers import core
from physics.operator import LinearOperator, inner

__all__ = ["ode_log_prob", "RealNVP", "FengResult", "fit_feng2023", "sample_feng2023"]


# -- 1. the prior's log-density ------------------------------------------------------------------
def _trace(out: torch.Tensor, x: torch.Tensor, probes: Optional[torch.Tensor], create_graph: bool) -> torch.Tensor:
    """``tr ∂out/∂x`` per item: Hutchinson mean of ``εᵀJε`` over ``probes [P, B, …]``, or exact (``None``)."""
    vectors = probes if probes is not None else _basis(x)
    est = torch.zeros(x.shape[0], dtype=x.real.dtype if x.is_complex() else x.dtype, device=x.device)
    for v in vectors:
        (g,) = torch.autograd.grad(inner(v, out).sum(), x, create_graph=create_graph, retain_graph=True)
        est = est + inner(v, g)
    return est / vectors.shape[0] if probes is not None else est


def _basis(x: torch.Tensor) -> torch.Tensor:
    """The ``d`` real unit directions of one item, repeated over the batch: ``[d, B, …]``."""
    n = x[0].numel()
    eye = torch.eye(n, dtype=x.real.dtype if x.is_complex() else x.dtype, device=x.device)
    if x.is_complex():
        eye = torch.cat([torch.complex(eye, torch.zeros_like(eye)), torch.complex(torch.zeros_like(eye), eye)])
    return eye.reshape((eye.shape[0], 1) + x.shape[1:]).expand((eye.shape[0],) + x.shape)


def _drift_and_trace(denoiser: core.Denoiser, x: torch.Tensor, sigma: float, probes: Optional[torch.Tensor],
                     create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x − D(x, σ), tr ∂D/∂x)``: the ODE drift in ``log σ`` and the trace of the denoiser's Jacobian."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.real.dtype if x.is_complex() else x.dtype,
                                     device=x.device))
        tr = _trace(out, x, probes, create_graph)
    drift = x - out
    return (drift, tr) if create_graph else (drift.detach(), tr.detach())


def ode_log_prob(denoiser: core.Denoiser, x: torch.Tensor, *, sigma_min: float, sigma_max: float,
                 steps: int = 8, solver: str = "rk4", divergence: str = "hutchinson", probes: int = 1,
                 probe: str = "rademacher", generator: core.Generator = None,
                 probe_tensor: Optional[torch.Tensor] = None, create_graph: bool = False) -> torch.Tensor:
    """``log p_{σ_min}(x)`` per item ``[B]`` through the probability-flow ODE (module docstring, part 1).

    ``x``: ``[B, C, H, W]`` (complex images count ``d = 2·C·H·W`` real unknowns). ``divergence``:
    ``"hutchinson"`` (``probes`` Rademacher/Gaussian vectors drawn with ``generator``, or the given
    ``probe_tensor [P, B, …]``) or ``"exact"``. ``create_graph=True`` keeps the graph so the result can be
    differentiated w.r.t. ``x`` (the variational training). NFE: ``steps·(2 | 4)``.
    """
    if solver not in ("heun", "rk4"):
        raise MedreconError(f"solver must be 'heun' or 'rk4', received {solver!r}")
    if divergence not in ("hutchinson", "exact"):
        raise MedreconError(f"divergence must be 'hutchinson' or 'exact', received {divergence!r}")
    if not 0 < sigma_min < sigma_max or int(steps) < 1:
        raise MedreconError(f"need 0 < sigma_min < sigma_max and steps >= 1, received {sigma_min}, {sigma_max}, {steps}")
    d = x[0].numel() * (2 if x.is_complex() else 1)
    eps = None
    if divergence == "hutchinson":
        eps = probe_tensor if probe_tensor is not None else _probes(x, probes, probe, generator)
    elif d > 4096:
        raise MedreconError(f"the exact divergence needs {d} vector-Jacobian products per evaluation; use "
                            "divergence='hutchinson' above 4096 real unknowns")
    t = torch.linspace(math.log(sigma_min), math.log(sigma_max), int(steps) + 1, dtype=torch.float64).tolist()
    f = lambda v, lt: _drift_and_trace(denoiser, v, math.exp(lt), eps, create_graph)  # noqa: E731
    integral = torch.zeros(x.shape[0], dtype=x.real.dtype if x.is_complex() else x.dtype, device=x.device)
    for a, b in zip(t, t[1:]):
        h = b - a
        k1, c1 = f(x, a)
        if solver == "heun":
            k2, c2 = f(x + h * k1, b)
            x, integral = x + h / 2 * (k1 + k2), integral + h / 2 * (2 * d - c1 - c2)
        else:
            k2, c2 = f(x + h / 2 * k1, (a + b) / 2)
            k3, c3 = f(x + h / 2 * k2, (a + b) / 2)
            k4, c4 = f(x + h * k3, b)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            integral = integral + h / 6 * (6 * d - c1 - 2 * c2 - 2 * c3 - c4)
    terminal = -inner(x, x) / (2 * sigma_max**2) - d / 2 * math.log(2 * math.pi * sigma_max**2)
    return terminal + integral


def _probes(x: torch.Tensor, n: int, kind: str, generator: core.Generator) -> torch.Tensor:
    """``[n, B, …]`` Hutchinson probes (unit variance per real component), per-item generators honoured."""
    if kind not in ("rademacher", "gaussian"):
        raise MedreconError(f"probe must be 'rademacher' or 'gaussian', received {kind!r}")
    z = core.randn(x.detach().unsqueeze(1).expand((x.shape[0], int(n)) + x.shape[1:]), generator)
    if kind == "rademacher":
        z = torch.complex(z.real.sign(), z.imag.sign()) if z.is_complex() else z.sign()
    return z.transpose(0, 1)


# -- 2. the flow ----------------------------------------------------------------------------------
def _masks(channels: int, h: int, w: int, depth: int, dtype: torch.dtype, device) -> list[torch.Tensor]:
    """Alternating checkerboard (parities 0, 1) and, for ≥ 2 channels, channel-half masks ``[c, H, W]``."""
    ii, jj = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    board = ((ii + jj) % 2).to(dtype).expand(channels, h, w)
    kinds = [board, 1 - board]
    if channels >= 2:
        half = (torch.arange(channels, device=device) < channels // 2).to(dtype)[:, None, None].expand(channels, h, w)
        kinds += [half, 1 - half]
    return [kinds[i % len(kinds)] for i in range(depth)]


class RealNVP(torch.nn.Module):
    """``B`` independent RealNVP flows on real images ``[c, H, W]`` (module docstring, part 2).

    :meth:`forward` maps ``z [B, K, c, H, W]`` to ``(x, log|det ∂x/∂z|)`` with ``x`` shaped like ``z`` and
    the log-determinant ``[B, K]``. Parameters have a leading item axis; the coupling nets are grouped
    convolutions (one group per item). ``shift [B, c, H, W]`` initialises the output mean.
    """

    def __init__(self, shift: torch.Tensor, *, depth: int = 8, hidden: int = 32, init_std: float = 0.05,
                 generator: core.Generator = None) -> None:
        super().__init__()
        b, c, h, w = shift.shape
        self.items, self.channels, self.hidden = b, c, hidden
        self.masks = _masks(c, h, w, depth, shift.dtype, shift.device)

        def conv(cin: int, cout: int, zero: bool = False) -> torch.nn.Parameter:
            template = shift.new_zeros((b, cout, cin, 3, 3))
            return torch.nn.Parameter(template if zero else core.randn(template, generator) / math.sqrt(9 * cin))

        self.weights = torch.nn.ParameterList()
        for _ in range(depth):
            self.weights.extend([conv(c, hidden), conv(hidden, hidden), conv(hidden, 2 * c, zero=True)])
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(shift.new_zeros((b, n))) for _ in range(depth) for n in (hidden, hidden, 2 * c)])
        self.shift = torch.nn.Parameter(shift.detach().clone())
        self.log_scale = torch.nn.Parameter(torch.full_like(shift, math.log(init_std)))

    def _net(self, layer: int, v: torch.Tensor) -> torch.Tensor:
        """The coupling net of ``layer`` on ``v [K, B·c, H, W]`` → ``[K, B·2c, H, W]``."""
        for j in range(3):
            wgt, bias = self.weights[3 * layer + j], self.biases[3 * layer + j]
            v = F.conv2d(v, wgt.reshape((-1,) + wgt.shape[2:]), bias.reshape(-1), padding=1, groups=self.items)
            v = F.silu(v) if j < 2 else v
        return v

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, c, h, w = z.shape
        v = z.transpose(0, 1).reshape(k, b * c, h, w)
        logdet = z.new_zeros(k, b)
        for layer, m in enumerate(self.masks):
            mm = m.repeat(b, 1, 1)
            st = self._net(layer, v * mm).reshape(k, b, 2, c, h, w)
            s = torch.tanh(st[:, :, 0]).reshape(k, b * c, h, w) * (1 - mm)
            t = st[:, :, 1].reshape(k, b * c, h, w) * (1 - mm)
            v = v * torch.exp(s) + t
            logdet = logdet + s.reshape(k, b, -1).sum(-1)
        x = self.shift[:, None] + torch.exp(self.log_scale)[:, None] * v.reshape(k, b, c, h, w).transpose(0, 1)
        return x, logdet.T + self.log_scale.reshape(b, -1).sum(-1)[:, None]

    def clip_per_item(self, max_norm: float) -> None:
        """Scale each item's gradient to norm ≤ ``max_norm`` (items stay independent)."""
        grads = [p.grad.reshape(self.items, -1) for p in self.parameters() if p.grad is not None]
        norm = torch.cat(grads, 1).norm(dim=1)
        factor = (max_norm / norm.clamp_min(1e-30)).clamp(max=1.0)
        for p in self.parameters():
            if p.grad is not None:
                p.grad.mul_(factor.reshape((-1,) + (1,) * (p.grad.ndim - 1)))


def _to_real(x: torch.Tensor) -> torch.Tensor:
    """Images ``[..., C, H, W]`` → real channels ``[..., c, H, W]`` (``[re, im]`` for complex)."""
    return torch.cat([x.real, x.imag], dim=-3) if x.is_complex() else x


def _to_image(v: torch.Tensor, complex_: bool) -> torch.Tensor:
    if not complex_:
        return v
    c = v.shape[-3] // 2
    return torch.complex(v[..., :c, :, :], v[..., c:, :, :])


@dataclass
class FengResult:
    """What :func:`fit_feng2023` returns: ``samples [B, C, H, W]`` (one per item), the flow's posterior
    ``mean`` and per-pixel ``std`` (``√E|x − mean|²``, both components for complex) from ``n_eval``
    samples, the trained ``flow`` and the per-iteration mean ``losses [iterations, B]`` (the KL up to a
    constant, in nats)."""

    samples: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    flow: RealNVP
    losses: torch.Tensor


def fit_feng2023(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, *, noise_std: float,
                 sigma_min: float, sigma_max: float, iterations: int = 500, particles: int = 8, lr: float = 1e-3,
                 depth: int = 8, hidden: int = 32, init_std: float = 0.05, clip: float = 10.0, ode_steps: int = 8,
                 solver: str = "rk4", divergence: str = "hutchinson", probes: int = 1, probe: str = "rademacher",
                 n_eval: int = 64, max_size: int = 64, generator: core.Generator = None,
                 callback: Optional[Callable[[dict], None]] = None,
                 x_init: Optional[torch.Tensor] = None) -> FengResult:
    """Train one RealNVP per measurement against ``p(x|y) ∝ N(y; Ax, σ_y²I)·p_{σ_min}(x)`` (module docstring).

    Progress: ``callback({"i", "sigma": σ_min, "x": a flow sample, "denoised": the particle mean, "loss"})``
    once per iteration.
    """
    if not noise_std > 0:
        raise MedreconError(f"feng2023 needs noise_std > 0 (the likelihood N(y; Ax, σ_y²I)), received {noise_std}")
    if len(operator.ishape) != 3 or operator.ishape[-1] * operator.ishape[-2] > max_size**2:
        raise MedreconError(f"feng2023 is limited to images of at most {max_size}x{max_size} pixels (it backpropagates "
                            f"through a probability-flow ODE per iteration), received [C, H, W] = {list(operator.ishape)}; "
                            "pass max_size= to allow more")
    start = core.template(operator, y, x_init) if x_init is not None else core.pinv(operator, y)
    start = start.to(core.template(operator, y).dtype).detach()
    complex_ = start.is_complex()
    flow = RealNVP(_to_real(start), depth=depth, hidden=hidden, init_std=init_std, generator=generator)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    real = _to_real(start)
    z_like = real.unsqueeze(1).expand((real.shape[0], int(particles)) + real.shape[1:])
    img_like = start.unsqueeze(1).expand((start.shape[0], int(particles)) + start.shape[1:])
    d = real[0].numel()
    losses = []
    for it in range(int(iterations)):
        with torch.enable_grad():
            # reparameterised flow samples x = f_φ(z), item-major [B, K, C, H, W]
            z = core.randn(z_like, generator)
            xr, logdet = flow(z)
            x = _to_image(xr, complex_)
            eps = _probes(img_like, probes, probe, generator).flatten(1, 2) if divergence == "hutchinson" else None
            # −log p(x) through the probability-flow ODE, with the graph for ∂/∂x
            logp = ode_log_prob(denoiser, x.flatten(0, 1), sigma_min=sigma_min, sigma_max=sigma_max, steps=ode_steps,
                                solver=solver, divergence=divergence, probe_tensor=eps, create_graph=True)
            # −log p(y|x) per particle, and log q(x) = log N(z) − log|det|
            data = torch.stack([inner(r, r) for r in (y - operator.forward(x[:, j]) for j in range(x.shape[1]))], 1)
            logq = -0.5 * z.reshape(z.shape[0], z.shape[1], -1).pow(2).sum(-1) - d / 2 * math.log(2 * math.pi) - logdet
            loss = (data / (2 * noise_std**2) - logp.reshape(x.shape[:2]) + logq).mean(1)
            # one Adam step per item's flow
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
        flow.clip_per_item(clip)
        opt.step()
        losses.append(loss.detach())
        if callback is not None:
            callback({"i": it, "sigma": sigma_min, "x": x[:, 0].detach(), "denoised": x.detach().mean(1),
                      "loss": losses[-1]})
    with torch.no_grad():
        zs = core.randn(real.unsqueeze(1).expand((real.shape[0], max(int(n_eval), 2)) + real.shape[1:]), generator)
        xs = _to_image(flow(zs)[0], complex_)
        sample = _to_image(flow(core.randn(real.unsqueeze(1), generator))[0], complex_)[:, 0]
    mean = xs.mean(1)
    std = (xs - mean[:, None]).abs().pow(2).mean(1).sqrt()
    return FengResult(sample, mean, std, flow, torch.stack(losses) if losses else real.new_zeros(0, real.shape[0]))


def sample_feng2023(denoiser: core.Denoiser, operator: LinearOperator, y: torch.Tensor, sigmas: torch.Tensor, *,
                    noise_std: float = 0.0, generator: core.Generator = None,
                    callback: Optional[Callable[[dict], None]] = None, particles: int = 8, lr: float = 1e-3,
                    depth: int = 8, hidden: int = 32, init_std: float = 0.05, clip: float = 10.0, ode_steps: int = 8,
                    solver: str = "rk4", divergence: str = "hutchinson", probes: int = 1, probe: str = "rademacher",
                    max_size: int = 64, x_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Registry entry: one posterior sample per item from the trained flow, ``[B, *operator.ishape]``.

    ``run(steps=N)`` sets the number of Adam iterations (``N = len(sigmas) − 1``); the schedule's end points
    ``σ_0`` and ``σ_{N−1}`` set the ODE's ``σ_max`` and ``σ_min``. Use :func:`fit_feng2023` for the flow's
    posterior mean and standard deviation. NFE per iteration ``2·ode_steps`` (Heun) or ``4·ode_steps``;
    backward passes ``(probes + 1)`` per evaluation (``d + 1`` with the exact divergence).
    """
    s = core.levels(sigmas)
    return fit_feng2023(denoiser, operator, y, noise_std=noise_std, sigma_min=s[-2], sigma_max=s[0],
                        iterations=len(s) - 1, particles=particles, lr=lr, depth=depth, hidden=hidden,
                        init_std=init_std, clip=clip, ode_steps=ode_steps, solver=solver, divergence=divergence,
                        probes=probes, probe=probe, n_eval=2, max_size=max_size, generator=generator,
                        callback=callback, x_init=x_init).samples
