"""Which CT data term each sampler should fit: the statistically weighted one (PWLS) or one noise level.

For each method, the same CT problems (:func:`quality.load_images`, :func:`quality.make_problem`: Poisson
noise at the benchmark's dose) are reconstructed twice through :func:`medrecon.recon.reconstruct`:
``weighted`` with ``physics.Weighted(A, σ_ref/σ_i)`` (:func:`medrecon.recon.weight_by_dose`, forced on
even where ``samplers.METHODS[m].weighted`` is False), and ``unweighted`` with the measured sinogram
and one noise level, the RMS of the per-bin σ_i (:func:`medrecon.recon.unweighted`). Methods whose
official step count exceeds 100 run at ``--long-steps`` steps (CPU time). The measurements behind
``Method.weighted`` are in :data:`medrecon.samplers.WEIGHTED_NOTE`:

    python benchmarks/data_term.py --data heldout --n 4
    python benchmarks/data_term.py --data ood --n 3

Prints a Markdown table: mean PSNR of each data term and the difference.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402  (benchmarks/quality.py: tasks, simulation, metrics)

from medrecon import MedreconError  # noqa: E402

DEFAULT_METHODS = "ddnm,pigdm,ilvr,dds,reddiff,dps,song2022,mcg"


def main(argv: Optional[list[str]] = None) -> int:
    from medrecon import priors, samplers
    from medrecon.recon import reconstruct, unweighted

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="ct-par-23", choices=[t for t, v in quality.TASKS.items() if v.modality == "ct"])
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma list of diffusion samplers")
    p.add_argument("--data", default="heldout", choices=["heldout", "ood"])
    p.add_argument("--n", type=int, default=4, help="slices")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--long-steps", type=int, default=50, help="steps for methods whose official count exceeds 100")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(samplers.available()))
    if unknown:
        raise MedreconError(f"unknown sampler(s) {unknown}; available: {', '.join(samplers.available())}")
    task = quality.TASKS[args.task]
    x, info = quality.load_images("ct", args.data, args.n, args.size, ROOT / ".devdata" / "mni152.npz")
    weighted, facts = quality.make_problem(task, x, torch.device("cpu"))
    op, y, sd = unweighted(weighted.operator, weighted.y, weighted.noise_std)
    plain = dataclasses.replace(weighted, operator=op, y=y, noise_std=sd)
    prior = priors.load("ct")
    print(f"{args.task}, {args.data} ({info['source']}), {args.size}², I₀ = {facts['dose']:g}\n\n"
          "| method | steps | weighted PSNR (dB) | unweighted PSNR (dB) | weighted − unweighted | Method.weighted |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for m in methods:
        spec = samplers.METHODS[m]
        steps = args.long_steps if spec.steps > 100 else None
        psnr = {}
        for name, problem in (("weighted", weighted), ("unweighted", plain)):
            samplers.METHODS[m] = dataclasses.replace(spec, weighted=True)  # the weighted column keeps the weights
            try:
                image, _ = reconstruct(problem, m, prior=prior, steps=steps, seed=0)
            finally:
                samplers.METHODS[m] = spec
            psnr[name] = float(np.mean(quality.slice_metrics("ct", problem.target, image)["psnr"]))
        print(f"| `{m}` | {steps or spec.steps} | {psnr['weighted']:.2f} | {psnr['unweighted']:.2f} | "
              f"{psnr['weighted'] - psnr['unweighted']:+.2f} | {spec.weighted} |", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MedreconError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
