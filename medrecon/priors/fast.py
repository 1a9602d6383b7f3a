"""A faster ``D(x, σ)`` on CUDA: bf16 autocast, optional ``torch.compile``, CUDA-graph replay.

A 1000-step sampler calls the network a thousand times on tensors of one shape. In eager PyTorch
each call launches a few hundred small kernels, and at batch 1 the launch overhead is most of the
time (measured on an H200 for the shipped 5.4M-parameter prior at 320²: 11.4 ms eager fp32 against
6.7 ms replaying one CUDA graph in bf16). :class:`FastDenoiser` wraps a :class:`~medrecon.priors.Prior`
so that, on a CUDA device and outside autograd, each new input shape is

1. optionally compiled (``compile=True``: ``torch.compile`` of the network, which fuses the
   GroupNorm/SiLU/residual element-wise chains into few kernels),
2. warmed up on a side stream and captured once as a CUDA graph (``graphs=True``) into static
   input/output buffers,
3. replayed on every later call: the input and σ are copied into the static buffers and a copy of
   the static output is returned (samplers keep earlier outputs).

The network runs under ``torch.autocast(dtype)`` (bf16 by default; ``dtype=None`` keeps float32),
the EDM preconditioning and the complex↔channel mapping around it stay in the input's precision
(autocast leaves element-wise ops alone). bf16 changes the denoiser output by a relative ~1e-3; the
reconstruction quality effect is measured by ``benchmarks/network_speed.py``.

In-place conversions reached through attribute delegation (``D.half()``, ``D.cuda()``) return the bare
prior: convert with :meth:`to`, which also drops the graphs. Falls back to the wrapped prior unchanged on the CPU, when gradients are needed (DPS, MCG, ΠGDM and
other samplers that back-propagate through ``D`` call it with ``x.requires_grad``), and while another
CUDA graph is being captured. Attributes not defined here (``manifest``, ``complex``, ``sigma_min``, …)
are the prior's, so the wrapper goes wherever a prior goes. A :class:`~medrecon.priors.CoarseToFine`
pair is wrapped expert by expert (its σ switch is a host-side choice that one graph would freeze)::

    D = priors.FastDenoiser(priors.load("mri", device="cuda"))
    x = samplers.run("ddnm", D, A, y, steps=1000)
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import torch

from medrecon import MedreconError
from medrecon.priors.base import Sigma, sigma_tensor

__all__ = ["FastDenoiser"]


class _Graph:
    """One captured evaluation: static input, σ and output buffers and the graph that links them."""

    def __init__(self, fn, x: torch.Tensor, sigma: torch.Tensor, warmup: int) -> None:
        self.x, self.sigma = x.clone(), sigma.clone()
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # compiles (if compiled) and settles the allocator outside the graph
                fn(self.x, self.sigma)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.x, self.sigma)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x)
        self.sigma.copy_(sigma)
        self.graph.replay()
        return self.out.clone()


class FastDenoiser:
    """``D(x, σ)`` of ``prior`` with bf16 autocast, optional ``torch.compile`` and CUDA graphs (module docstring).

    Args:
        prior: a :class:`~medrecon.priors.Prior` (or any ``nn.Module`` denoiser ``D(x, σ)``).
        dtype: autocast dtype of the network (``torch.bfloat16``, ``torch.float16``) or ``None`` for
            the prior's own precision.
        graphs: capture one CUDA graph per input shape and replay it.
        compile: ``torch.compile`` the network first (seconds to a minute the first time per shape).
        max_graphs: graphs kept (oldest dropped first); each holds its own activation memory.
        warmup: eager calls before a capture.
    """

    def __init__(self, prior: Any, *, dtype: Optional[torch.dtype] = torch.bfloat16, graphs: bool = True,
                 compile: bool = False, max_graphs: int = 4, warmup: int = 3) -> None:
        if not callable(prior):
            raise MedreconError(f"FastDenoiser needs a callable prior D(x, sigma), received {type(prior).__name__}")
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise MedreconError(f"FastDenoiser dtype must be torch.bfloat16, torch.float16 or None, received {dtype}")
        if max_graphs < 1 or warmup < 1:
            raise MedreconError(f"max_graphs and warmup must be ≥ 1, received {max_graphs} and {warmup}")
        from medrecon.priors.cascade import CoarseToFine

        if isinstance(prior, CoarseToFine):  # one wrapper per expert; the pair switches on the host
            prior = prior.map_experts(lambda expert: FastDenoiser(
                expert, dtype=dtype, graphs=graphs, compile=compile, max_graphs=max_graphs, warmup=warmup))
            dtype, graphs, compile = None, False, False
        self.prior, self.dtype, self.graphs, self.compile = prior, dtype, bool(graphs), bool(compile)
        self.max_graphs, self.warmup = int(max_graphs), int(warmup)
        self._compiled: Optional[Any] = None
        self._cache: dict[tuple, _Graph] = {}
        self.stats = {"graph_calls": 0, "eager_calls": 0, "captures": 0}

    def __getattr__(self, name: str) -> Any:  # manifest, complex, sigma_min, … are the prior's
        if name == "prior":  # not yet set (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.prior, name)

    def __getstate__(self) -> dict:  # pickling/deep copies: CUDA graphs and compiled wrappers are rebuilt on use
        state = dict(self.__dict__)
        state["_cache"], state["_compiled"] = {}, None
        return state

    def to(self, *args, **kwargs) -> "FastDenoiser":
        """Move the prior (like ``nn.Module.to``). Captured graphs are dropped unless the parameters
        stayed where they were (a dtype or device change reallocates them; graphs read the old memory)."""
        if hasattr(self.prior, "to"):
            before = self._weights()
            self.prior = self.prior.to(*args, **kwargs)
            if self._weights() != before or before is None:
                self._cache.clear()
                self._compiled = None
        return self

    def _weights(self) -> Optional[tuple]:
        """Address, dtype and device of the prior's first parameter (None without parameters)."""
        params = getattr(self.prior, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        return None if first is None else (first.data_ptr(), first.dtype, first.device)

    def _network_call(self):
        """``fn(x, σ[B])``: the prior, compiled if asked, under autocast if asked."""
        fn = self.prior
        if self.compile:
            if self._compiled is None:
                self._compiled = torch.compile(self.prior, dynamic=False)  # a wrapper: the prior itself is unchanged
            fn = self._compiled
        if self.dtype is None:
            return fn

        def run(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", dtype=self.dtype, cache_enabled=False):  # required under CUDA-graph capture
                return fn(x, sigma)
        return run

    def __call__(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        s = sigma_tensor(sigma, x)
        fast = (x.device.type == "cuda" and not (torch.is_grad_enabled() and x.requires_grad)
                and not torch.cuda.is_current_stream_capturing())
        if not fast:
            self.stats["eager_calls"] += 1
            return self.prior(x, sigma)
        fn = self._network_call()
        if not self.graphs:
            self.stats["eager_calls"] += 1
            with torch.no_grad():
                return fn(x, s)
        key = (tuple(x.shape), x.dtype, x.device)
        graph = self._cache.get(key)
        if graph is None:
            if len(self._cache) >= self.max_graphs:
                self._cache.pop(next(iter(self._cache)))
            try:  # buffers made outside inference mode, so later calls outside it can copy into them
                with torch.inference_mode(False), torch.no_grad():
                    graph = self._cache[key] = _Graph(fn, x, s, self.warmup)
            except Exception as err:  # noqa: BLE001 - a capture failure must not lose the reconstruction
                warnings.warn(f"{self!r}: CUDA-graph capture failed ({type(err).__name__}: {err}); "
                              "running eagerly from now on", RuntimeWarning, stacklevel=2)
                self.graphs = False
                self.stats["capture_error"] = f"{type(err).__name__}: {err}"
                return self(x, sigma)
            self.stats["captures"] += 1
        self.stats["graph_calls"] += 1
        return graph(x, s)

    def __repr__(self) -> str:
        return (f"FastDenoiser({getattr(self.prior, 'name', type(self.prior).__name__)!r}, dtype={self.dtype}, "
                f"graphs={self.graphs}, compile={self.compile})")
