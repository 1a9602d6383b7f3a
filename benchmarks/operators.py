"""CPU benchmark of the physics operators: prints a Markdown table.

* Radon (``physics.Radon``, parallel beam, default detectors ≈ √2·N) forward + adjoint beside
  ``skimage.transform.radon`` + ``iradon`` at 256²/180 views and 512²/720 views, measured in the same
  run (the ratio column is skimage time / ours).
* Multi-coil SENSE (``physics.MultiCoilMRI``) forward + adjoint at 15 coils, 640×368.

Time: best of ``--repeats`` wall-clock runs. Memory: peak resident-set growth of a **fresh child
process** (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the work minus the RSS before it, the
inputs already allocated). ``tracemalloc`` cannot see torch's allocator, and an in-process RSS delta
would be hidden by memory freed earlier in the same process, hence one subprocess per row.

On the CPU ``physics.Radon`` runs the numba kernels of ``physics.kernels.ct_numba``, which use
``torch.get_num_threads()`` threads (so ``--threads`` sets both); a 16² warm-up loads them first.

Usage: ``python benchmarks/operators.py [--repeats 3] [--threads 1] [--quick]``. Timings on a shared machine are
noisy; compare ratios from the same run only.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _measure(kind: str, size: int, views: int, repeats: int, threads: int, queue) -> None:
    import numpy as np
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    result: dict = {}
    if kind in ("radon", "skimage"):
        from skimage.data import shepp_logan_phantom
        from skimage.transform import resize

        img = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
        if kind == "radon":
            from physics import ParallelBeam, Radon

            op = Radon(ParallelBeam(size, torch.arange(views, dtype=torch.float64) * math.pi / views))
            x = torch.tensor(img, dtype=torch.float32)[None, None]
            run = lambda: op.adjoint(op(x))  # noqa: E731
            # warm-up on a 16² problem: loads (or JIT-compiles) the numba CPU kernels, like an import,
            # before the timing and the memory baseline
            tiny = Radon(ParallelBeam(16, torch.arange(4, dtype=torch.float64)))
            tiny.adjoint(tiny(torch.zeros(1, 1, 16, 16)))
        else:
            from skimage.transform import iradon, radon

            theta = np.arange(views) * 180.0 / views
            run = lambda: iradon(radon(img, theta=theta), theta=theta)  # noqa: E731
    else:
        try:
            from physics import MultiCoilMRI
        except (ImportError, AttributeError) as err:  # physics/mri.py is written in parallel
            queue.put({"error": f"physics.MultiCoilMRI not importable yet: {err}"})
            return
        g = torch.Generator().manual_seed(0)
        coils, h, w = 15, 640, 368
        maps = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g)
        maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
        mask = torch.zeros(1, w)
        mask[:, ::4] = 1
        op = MultiCoilMRI(mask, maps)
        x = torch.randn(1, 1, h, w, dtype=torch.complex64, generator=g)
        run = lambda: op.adjoint(op(x))  # noqa: E731
    before = _rss_mb()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    result["seconds"] = min(times)
    result["extra_mb"] = max(0.0, _peak_mb() - before)
    queue.put(result)


def measure(kind: str, size: int, views: int, repeats: int, threads: int = 0) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, size, views, repeats, threads, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default); 1 avoids "
                        "OpenMP oversubscription on a loaded machine")
    parser.add_argument("--quick", action="store_true", help="only the 256²/180 Radon row")
    args = parser.parse_args()
    rows = [(256, 180)] if args.quick else [(256, 180), (512, 720)]
    print("| operator | size | ours fwd+adj (s) | ours extra MB | skimage radon+iradon (s) | skimage extra MB | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, views in rows:
        ours = measure("radon", size, views, args.repeats, args.threads)
        ref = measure("skimage", size, views, args.repeats)
        print(f"| Radon parallel | {size}²/{views} views | {ours['seconds']:.3f} | {ours['extra_mb']:.0f} | "
              f"{ref['seconds']:.3f} | {ref['extra_mb']:.0f} | {ref['seconds'] / ours['seconds']:.2f}× |")
    if not args.quick:
        mri = measure("mri", 0, 0, args.repeats, args.threads)
        if "error" in mri:
            print(f"| MultiCoilMRI | 15 coils 640×368 | {mri['error']} | | | | |")
        else:
            print(f"| MultiCoilMRI | 15 coils 640×368 | {mri['seconds']:.3f} | {mri['extra_mb']:.0f} | — | — | — |")
    print(json.dumps({"note": "best of repeats; RSS growth of a fresh process per row; shared 2-core machine"}))


if __name__ == "__main__":
    main()
