"""Coarse-to-fine (pyramidal) sampling against full-resolution sampling at the same NFE.

Held-out generated brain MRI slices (``make_source("mri-brain", "cpu", anatomy_path=.devdata/mni152.npz,
split="heldout")``), single-coil Cartesian MRI with a fastMRI-style equispaced mask (4×, 8 % ACS),
σ_y = 0.01 relative to the 99.5th-percentile-normalised image, the shipped prior ``priors.load("mri")``.
Per method and setting: wall seconds, NFE, and PSNR of |x| against the ground truth (data range =
max |x_gt| per slice), averaged over the slices; ``ratio`` = full-resolution wall / this wall.
Run: ``python benchmarks/pyramid.py [--size 128 --slices 4 --steps 50 --methods dps,ddnm]``. Wall times on
a shared CPU are disturbed by other processes: compare rows of one run only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import physics  # noqa: E402
from medrecon import priors, samplers  # noqa: E402
from medrecon.data import make_source  # noqa: E402


def psnr(x: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean over slices of ``10 log10(max|gt|² / MSE(|x|, |gt|))``."""
    a, b = x.abs().flatten(1), gt.abs().flatten(1)
    mse = (a - b).pow(2).mean(1)
    return float((10 * torch.log10(b.max(1).values ** 2 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--methods", default="dps,ddnm")
    p.add_argument("--until", default="2.0,0.5", help="until_sigma values (comma-separated)")
    p.add_argument("--anatomy", default=".devdata/mni152.npz")
    args = p.parse_args()
    torch.manual_seed(0)
    prior = priors.load("mri").eval()
    gen = torch.Generator().manual_seed(7)
    gt = make_source("mri-brain", "cpu", anatomy_path=args.anatomy, split="heldout").sample(args.slices, args.size, gen)
    gt = gt.to(torch.complex64)
    scale = gt.abs().flatten(1).quantile(0.995, dim=1).clamp_min(1e-6).reshape(-1, 1, 1, 1)
    gt = gt / scale
    n = args.size
    mask = torch.zeros(n)
    mask[::4] = 1
    acs = max(1, int(0.08 * n))
    mask[n // 2 - acs // 2: n // 2 - acs // 2 + acs] = 1
    op = physics.SingleCoilMRI(mask, shape=(n, n))
    sy = 0.01
    noise = torch.complex(torch.randn(gt.shape, generator=gen), torch.randn(gt.shape, generator=gen))
    y = op.forward(gt) + sy * op.forward(op.adjoint(noise.to(gt.dtype)))
    rows = [f"| method | setting | NFE | coarse steps | wall s | ratio | PSNR dB |", "| --- | --- | --- | --- | --- | --- | --- |"]
    rows.append(f"| zero-filled | Aᴴy | 0 | 0 | 0 | – | {psnr(op.adjoint(y), gt):.2f} |")
    for name in args.methods.split(","):
        sched = samplers.schedules.vp_linear(args.steps) if samplers.METHODS[name].schedule == "vp" else None
        base = None
        for until in [None] + [float(u) for u in args.until.split(",")]:
            ctf = None if until is None else {"factor": 2, "until_sigma": until}
            x, st = samplers.run(name, prior, op, y, noise_std=sy, steps=args.steps, return_stats=True,
                                 generator=torch.Generator().manual_seed(0), coarse_to_fine=ctf)
            x = x.detach()
            base = st.seconds if until is None else base
            k = 0 if until is None else int((sched[:-1] > until).sum()) if sched is not None else -1
            label = "full resolution" if until is None else f"coarse ×2 until σ={until:g}"
            rows.append(f"| {name} | {label} | {st.nfe} | {k} | {st.seconds:.1f} | {base / st.seconds:.2f} | {psnr(x, gt):.2f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
