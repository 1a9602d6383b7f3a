"""Test-time adaptation of the prior to one measurement: Steerable Conditional Diffusion (SCD; Barbano, Denker,
Chung, Roh, Arridge, Maass, Jin & Ye, 2023, arXiv:2308.14409; alexdenker/SteerableConditionalDiffusion,
``algos/scd.py``, ``adapt/lora.py``).

A prior trained on one anatomy knows little of another: on the benchmark's real knee and abdomen slices
the MRI prior leads a TV denoiser by 1.5–1.7 dB, against 4.4–4.8 dB on held-out images (RESULTS.md). SCD
adapts the network during sampling, from the measurement alone. Low-rank updates (LoRA, Hu et al. 2022)
``W + U·D`` are added to the convolutions of the UNet's residual and attention blocks, and at chosen steps
``iters`` Adam iterations minimise the data misfit of the clean estimate,

    min over (U, D) of   mean |A D_{W+UD}(x_t, σ_t) − y|²  (+ tv · TV(D_{W+UD}(x_t, σ_t)))

(SCD's adaptation objective, as in its README and ``algos/scd.py``: the mean over the measurement's
elements, the TV summed). The updates carry over to the later steps. Any sampler of the registry runs on
the adapted denoiser unchanged: ``samplers.run(..., adapt=True)`` wraps the denoiser in :class:`Adapted`.

Official setting (the README's walnut example, with the meaning the code gives its flags): rank 8, 16
iterations per adapted step, Adam at lr 1e-4, adaptation at every 20th step counted from the last and at
the last 4 steps (100 DDS steps: 8 adapted steps, 128 extra forward and backward passes). The example's TV
weight (1e-3) is optional there; here it is 0 by default.

Where we differ:

* The misfit is that of the denoiser's output ``D(x_t, σ_t)``. SCD's is that of its DDS estimate after the
  CG data step; with DDNM's exact projection that estimate fits the data by construction, so its misfit
  would carry no signal.
* The samplers' noise direction ``ε̂ = (x_t − x̂₀)/σ_t`` comes from the adapted network; SCD's from the
  unadapted one (LoRA scale 0).
* No LoRA dropout (SCD's modules declare 0.1 but run in eval mode). As in SCD, down-projections start
  ``N(0, 1/rank²)`` and up-projections at zero, so before the first update the network is the prior, exactly.
* One set of low-rank weights per batch item (grouped convolutions): a batch of B slices is B independent
  adaptations (each item's weights see only its own misfit, and Adam is element-wise). SCD runs one slice
  at a time.
* The data term is the operator's: for CT with :class:`physics.Weighted` it is the weighted (PWLS) misfit.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrecon import MedreconError
from physics.operator import LinearOperator

__all__ = ["Adaptation", "Adapted", "adaptable_convolutions"]


@dataclass(frozen=True)
class Adaptation:
    """SCD's hyper-parameters (module docstring; defaults = the official walnut example)."""

    rank: int = 8  # LoRA rank of every adapted convolution
    iters: int = 16  # Adam iterations per adapted step
    lr: float = 1e-4  # Adam learning rate
    every: int = 20  # adapt at every ``every``-th step counted from the last one …
    last: int = 4  # … and at the last ``last`` steps
    tv: float = 0.0  # weight of an anisotropic TV term on the adapted estimate (SCD's ``alphatv``)

    @classmethod
    def parse(cls, spec: Any) -> "Adaptation":
        """``True`` → the official setting; a dict of fields; an :class:`Adaptation` as is."""
        if isinstance(spec, Adaptation):
            out = spec
        elif spec is True:
            out = cls()
        elif isinstance(spec, dict):
            unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise MedreconError(f"adapt: unknown option(s) {sorted(unknown)}; options are "
                                    f"{[f.name for f in dataclasses.fields(cls)]}")
            out = cls(**spec)
        else:
            raise MedreconError(f"adapt must be True, a dict of SCD options or an Adaptation, received {spec!r}")
        for name in ("rank", "every", "last"):
            v = getattr(out, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise MedreconError(f"adapt: {name} must be an integer ≥ 1, received {v!r}")
        if isinstance(out.iters, bool) or int(out.iters) != out.iters or out.iters < 0:
            raise MedreconError(f"adapt: iters must be an integer ≥ 0, received {out.iters!r}")
        if not (math.isfinite(out.lr) and out.lr >= 0) or not (math.isfinite(out.tv) and out.tv >= 0):
            raise MedreconError(f"adapt: lr and tv must be finite and ≥ 0, received {out.lr!r}, {out.tv!r}")
        return out

    def steps(self, n: int) -> list[int]:
        """The adapted steps of an ``n``-step run (step ``i`` denoises at ``σ_i``): SCD's ``ts[::skip]``
        (every ``every``-th from the last step) plus ``ts[0:4]`` (the last ``last`` steps)."""
        return sorted(i for i in range(n) if (n - 1 - i) % self.every == 0 or i >= n - self.last)


def adaptable_convolutions(network: nn.Module) -> list[nn.Conv2d]:
    """The convolutions SCD adapts: those of the UNet's residual and attention blocks (not the stem, the
    output layer or the noise embedding)."""
    from medrecon.priors.unet import _Attention, _ResBlock

    convs: list[nn.Conv2d] = []
    for block in network.modules():
        if isinstance(block, (_ResBlock, _Attention)):
            convs += [m for m in block.children() if isinstance(m, nn.Conv2d)]
    return convs


class _LowRank:
    """A per-item low-rank update ``U_b D_b`` of one convolution, added to its output by a forward hook.
    ``D_b`` has the convolution's kernel, stride and padding; ``U_b`` is 1×1 (LoRA for convolutions)."""

    @staticmethod
    def check(conv: nn.Conv2d, rank: int) -> None:
        if conv.groups != 1:
            raise MedreconError("adapt: grouped convolutions are not supported")
        if rank > min(conv.in_channels, conv.out_channels):
            raise MedreconError(f"adapt: rank {rank} exceeds a convolution's channels "
                                f"({conv.in_channels} → {conv.out_channels})")

    def __init__(self, conv: nn.Conv2d, batch: int, rank: int) -> None:
        w = conv.weight
        gen = torch.Generator().manual_seed(0)  # every item starts alike: a batch equals its single runs
        down = torch.randn((rank, conv.in_channels) + tuple(conv.kernel_size), generator=gen, dtype=torch.float64) / rank
        self.down = down.to(w.dtype).repeat(batch, 1, 1, 1).to(w.device).requires_grad_(True)
        self.up = torch.zeros(batch * conv.out_channels, rank, 1, 1, dtype=w.dtype, device=w.device, requires_grad=True)
        self.batch = batch
        self.handle = conv.register_forward_hook(self._hook)

    def _hook(self, conv: nn.Conv2d, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        b = x.shape[0]
        if b != self.batch:
            raise MedreconError(f"adapt: the network was adapted for a batch of {self.batch}, called with {b}")
        h = F.conv2d(x.reshape(1, b * x.shape[1], *x.shape[2:]), self.down, None, conv.stride, conv.padding,
                     conv.dilation, groups=b)
        h = F.conv2d(h, self.up, groups=b)
        return out + h.reshape(out.shape)


def _tv(x: torch.Tensor) -> torch.Tensor:
    """Per-item anisotropic TV, ``Σ |∂_h x| + |∂_w x|`` (magnitudes of complex differences)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs()
    return dh.reshape(x.shape[0], -1).sum(1) + dw.reshape(x.shape[0], -1).sum(1)


def network_of(denoiser: Any) -> nn.Module:
    """The ``nn.Module`` to adapt: the denoiser itself, or the prior inside a
    :class:`~medrecon.priors.FastDenoiser` (adaptation runs the network eagerly)."""
    from medrecon.priors.fast import FastDenoiser

    net = denoiser.prior if isinstance(denoiser, FastDenoiser) else denoiser
    if not isinstance(net, nn.Module) or not adaptable_convolutions(net):
        raise MedreconError(f"adapt needs a trained network prior (priors.load), received {type(denoiser).__name__}")
    return net


class Adapted:
    """``D(x, σ)`` with SCD adaptation (module docstring): the first call at each level of ``levels`` first
    runs ``iters`` Adam iterations on the low-rank weights against ``mean |A D(x, σ) − y|²`` per item.

    ``call`` evaluates the network (the caller's counted wrapper of it, so NFE and backward passes include
    the adaptation); ``network`` is the module whose convolutions get the updates. :meth:`close` removes them
    and restores the network's ``requires_grad`` flags (``samplers.run`` does so after each sample)."""

    def __init__(self, call: Callable[[torch.Tensor, Any], torch.Tensor], network: nn.Module,
                 operator: LinearOperator, y: torch.Tensor, levels: Sequence[float], spec: Adaptation) -> None:
        self.call, self.operator, self.y, self.spec = call, operator, y, spec
        self.pending = [float(s) for s in levels]
        convs = adaptable_convolutions(network)
        for conv in convs:  # every check before the first hook: a refusal leaves the network untouched
            _LowRank.check(conv, int(spec.rank))
        self._flags = [(p, p.requires_grad) for p in network.parameters()]
        for p, _ in self._flags:  # only the low-rank weights train
            p.requires_grad_(False)
        self.layers = [_LowRank(c, y.shape[0], int(spec.rank)) for c in convs]
        self.optimizer = torch.optim.Adam([t for layer in self.layers for t in (layer.down, layer.up)], lr=spec.lr)
        self.adapted_levels: list[float] = []

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        s = float(sigma.reshape(-1)[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        hit = next((lv for lv in self.pending if abs(lv - s) <= 1e-6 * max(lv, 1e-12)), None)
        if hit is not None:
            self.pending.remove(hit)
            self._adapt(x.detach(), sigma)
            self.adapted_levels.append(hit)
        return self.call(x, sigma)

    def _adapt(self, x: torch.Tensor, sigma: Any) -> None:
        with torch.enable_grad():
            for _ in range(int(self.spec.iters)):
                self.optimizer.zero_grad(set_to_none=True)
                out = self.call(x, sigma)
                misfit = (self.operator.forward(out) - self.y).abs() ** 2
                loss = misfit.reshape(x.shape[0], -1).mean(1)
                if self.spec.tv > 0:
                    loss = loss + self.spec.tv * _tv(out)
                loss.sum().backward()  # items are independent: each item's weights get its own gradient
                self.optimizer.step()

    def close(self) -> None:
        """Remove the low-rank updates; the network is the prior again."""
        for layer in self.layers:
            layer.handle.remove()
        self.layers = []
        for p, flag in self._flags:
            p.requires_grad_(flag)
