"""Helpers for tests/medrecon/test_train.py: a trivially learnable image source and a DDP worker.

Kept in an importable module because ``torch.multiprocessing.spawn`` needs a picklable,
importable worker function.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch


class PatternSource:
    """A trivially learnable source: one fixed smooth pattern times a random amplitude.

    ``sample(n, size, generator)`` returns ``[n, 1, size, size]`` — float32, or complex64 with a
    fixed linear phase when ``complex=True`` — drawn on the generator's device. The images lie on
    a one-dimensional manifold, so a tiny denoiser learns them in a few dozen steps.
    ``fail_after`` makes the call after that many samples raise, to simulate a crash mid-run.
    """

    def __init__(self, complex: bool = False, fail_after: Optional[int] = None) -> None:
        self.complex = complex
        self.channels = 1
        self.recipe: Dict[str, Any] = {"kind": "pattern", "complex": complex}
        self.value_scaling: Dict[str, Any] = {"kind": "identity"}
        self.fail_after = fail_after
        self.calls = 0
        self.batches: List[torch.Tensor] = []

    def sample(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError(f"simulated crash after {self.calls} batches")
        self.calls += 1
        device = generator.device
        t = torch.linspace(-1.0, 1.0, size, device=device)
        yy, xx = torch.meshgrid(t, t, indexing="ij")
        pattern = torch.exp(-((xx - 0.2) ** 2 + yy**2) / 0.2) - 0.5 * torch.exp(-((xx + 0.4) ** 2 + (yy - 0.3) ** 2) / 0.05)
        amp = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, device=device, generator=generator)
        x = amp * pattern
        if self.complex:
            x = x * torch.exp(1j * torch.pi * 0.5 * (xx + yy))
        self.batches.append(x.detach().clone())
        return x.to(torch.complex64 if self.complex else torch.float32)


def worker(rank: int, world_size: int, port: int, tmp: str, argv_a: List[str], argv_b: List[str]) -> None:
    """One DDP rank: an uninterrupted run (``argv_a``), then the same run split into two invocations
    (``argv_b`` stopped by ``--max-steps-this-run``, then rerun); saves both results per rank."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from medrecon import train

    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        parser = train.build_parser()
        src_a = PatternSource()
        res_a = train.run(parser.parse_args(argv_a), source=src_a)
        res_b1 = train.run(parser.parse_args(argv_b + ["--max-steps-this-run", "2"]), source=PatternSource())
        res_b2 = train.run(parser.parse_args(argv_b), source=PatternSource())
        torch.save({
            "a": res_a.model.state_dict(), "a_ema": res_a.ema.state_dict(), "a_step": res_a.step,
            "b": res_b2.model.state_dict(), "b_ema": res_b2.ema.state_dict(),
            "b1_step": res_b1.step, "b_step": res_b2.step,
            "first_batch": src_a.batches[0],
            "export": str(res_a.export_path),
        }, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
