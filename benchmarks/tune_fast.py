"""Choose a sampler's ≤ 100-NFE preset on a validation split the quality benchmark never reports.

The benchmark (``quality.py``) scores the first 5 images of each held-out set (brain + body, head +
body). This script scores images ``--offset`` to ``--offset + n/2 − 1`` (default 20–24) of the same sets
(:func:`quality.load_images`), through the same simulation (:func:`quality.make_problem`) and the same
reconstruction path (:func:`medrecon.recon.reconstruct`), so a preset chosen here is not fitted to
the reported slices. Each ``--config NAME=JSON`` is one run; the JSON holds the sampler's options
plus ``steps``, ``schedule`` (``"vp"``, ``"ve"``, ``"karras"``), ``sigma_min`` and ``sigma_max``.

    python benchmarks/tune_fast.py --task mri-sc-4x --method ddnm \\
        --config 'published={"steps": 100}' \\
        --config 'edm={"steps": 100, "schedule": "karras", "eta": 1.0}'

Prints a Markdown table (mean PSNR/SSIM over the slices, NFE, seconds) and appends one JSON line
per run to ``--jsonl`` if given. The choices behind ``medrecon.samplers.METHODS[m].tuned`` are in
:data:`medrecon.samplers.TUNED_NOTE`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402  (benchmarks/quality.py: tasks, simulation, metrics)

from medrecon import MedreconError  # noqa: E402


def parse_config(text: str) -> tuple[str, dict]:
    name, sep, body = text.partition("=")
    if not sep or not name:
        raise MedreconError(f"--config must be NAME=JSON, received {text!r}")
    try:
        opts = json.loads(body)
    except json.JSONDecodeError as err:
        raise MedreconError(f"--config {name}: invalid JSON ({err})") from None
    if not isinstance(opts, dict):
        raise MedreconError(f"--config {name}: expected a JSON object, received {body!r}")
    return name, opts


def main(argv: Optional[list[str]] = None) -> int:
    from medrecon.recon import reconstruct

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="mri-sc-4x", choices=list(quality.TASKS))
    p.add_argument("--method", required=True)
    p.add_argument("--config", action="append", required=True, metavar="NAME=JSON")
    p.add_argument("--offset", type=int, default=20, help="first image of each held-out set (≥ 5: the benchmark reports 0–4)")
    p.add_argument("--n", type=int, default=10, help="slices (half from each of the two held-out sets)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--jsonl", default=None, help="append one JSON line per run here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.offset < 5:
        raise MedreconError(f"--offset must be 5 or more (the benchmark reports images 0–4), received {args.offset}")
    task = quality.TASKS[args.task]
    x, info = quality.load_images(task.modality, "heldout", args.n, args.size, None, offset=args.offset)
    problem, _ = quality.make_problem(task, x, torch.device("cpu"))
    print(f"{args.task}, {args.method}, validation slices {info['source']} ({args.size}²)\n\n"
          "| config | options | NFE | PSNR (dB) | SSIM | s |\n| --- | --- | --- | --- | --- | --- |")
    for text in args.config:
        name, opts = parse_config(text)
        steps = opts.pop("steps", None)
        t0 = time.perf_counter()
        image, stats = reconstruct(problem, args.method, prior=task.modality, steps=steps, seed=0, options=opts)
        seconds = time.perf_counter() - t0
        m = quality.slice_metrics(task.modality, problem.target, image)
        row = {"config": name, "task": args.task, "method": args.method, "images": info["source"], "size": args.size,
               "steps": steps, "options": opts, "nfe": stats.get("nfe"), "psnr": float(np.mean(m["psnr"])),
               "ssim": float(np.mean(m["ssim"])), "psnr_per_slice": [round(v, 2) for v in m["psnr"]],
               "seconds": round(seconds, 1)}
        print(f"| {name} | {json.dumps({'steps': steps, **opts})} | {row['nfe']} | {row['psnr']:.2f} | "
              f"{row['ssim']:.3f} | {row['seconds']} |", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MedreconError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
